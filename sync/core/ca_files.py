"""`ca_file` settings checked when the config loads, not when the first request fails.

requests only looks at the path when it opens a connection, and then says `OSError: Could not
find a suitable TLS CA certificate bundle` with no word of which config line set it; this
names the line and field like any other config mistake, for every `ca_file` in the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ga4sync.core.validation_errors import dotted
from ga4sync.core.yamlsource import Loc, YamlDocument
from pydantic import BaseModel

FIELD = "ca_file"


def ca_file_problems(
    model: BaseModel, doc: YamlDocument, resolve: Callable[[str], Path], loc: Loc = ()
) -> list[str]:
    """One `file:line:col: field: ...` line per `ca_file` that is not a readable file.
    Relative paths are resolved as the connectors resolve them (against the config's folder)."""
    problems: list[str] = []
    fields = type(model).model_fields
    for name, value in model:
        here = (*loc, fields[name].alias or name)
        if name == FIELD and isinstance(value, str) and value:
            problem = _problem(resolve(value))
            if problem:
                problems.append(f"{doc.where(here)}: {dotted(here)}: {problem}")
            continue
        for index, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
            if isinstance(item, BaseModel):
                item_loc = here if index is None else (*here, index)
                problems += ca_file_problems(item, doc, resolve, item_loc)
    return problems


def _problem(path: Path) -> str | None:
    hint = "give the path of a PEM file with the CA certificate (relative to the config file)"
    if not path.exists():
        return f"CA file {path} not found; {hint}"
    if not path.is_file():
        return f"CA file {path} is not a file; {hint}"
    if not os.access(path, os.R_OK):
        return f"CA file {path} cannot be read by this user; check its permissions"
    return None
