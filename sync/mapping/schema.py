"""The mapping file's JSON Schema, generated from the pydantic model and shipped with the package.

Editors (VS Code's YAML extension, JetBrains) read it through the
`# yaml-language-server: $schema=...` line at the top of each mapping, so a sales-ops person
sees a typo underlined and gets key completion while typing, before ga4sync ever runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ga4sync.mapping.model import MappingFile

SHIPPED_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "mapping.schema.json"
"""Where the package keeps the generated schema (package data)."""

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def mapping_json_schema() -> dict[str, Any]:
    """The schema of a mapping file as YAML is written (aliases such as `from`)."""
    schema = MappingFile.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": DIALECT, **schema}


def schema_text() -> str:
    """The exact text of the shipped file; a test keeps the two identical."""
    return json.dumps(mapping_json_schema(), indent=2, ensure_ascii=False) + "\n"
