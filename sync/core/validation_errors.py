"""Turn pydantic errors into one line per problem with file:line:column (STYLE.md #9).

Config and mapping files are edited by people who are not programmers, so each problem says
where it is, what is wrong, which rule it breaks and what to do about it, in one line:
`file:line:column: where: what is wrong (rule) — suggestion`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from ga4sync.core.yamlsource import Loc, YamlDocument
from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file, pinned to a line and column."""

    path: str
    line: int
    column: int
    where: str
    """Dotted location of the value, e.g. `rules[2].event`; empty for the whole file."""
    message: str
    rule: str = ""
    """The GA4 or mapping rule broken, e.g. `GA4 NAME_RESERVED`."""
    suggestion: str = ""

    def __str__(self) -> str:
        out = f"{self.path}:{self.line}:{self.column}: "
        if self.where:
            out += f"{self.where}: "
        out += self.message
        if self.rule:
            out += f" ({self.rule})"
        if self.suggestion:
            out += f" — {self.suggestion}"
        return out


def problem_at(
    doc: YamlDocument, loc: Loc, message: str, rule: str = "", suggestion: str = ""
) -> Problem:
    """A problem at the most precise position the document knows for `loc`."""
    pos = doc.position(loc)
    return Problem(
        doc.path, pos.line, pos.column, dotted(loc) if loc else "", message, rule, suggestion
    )


def dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _clean_loc(doc: YamlDocument, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the parts pydantic adds for unions (a discriminator value, a model name)."""
    out: tuple[str | int, ...] = ()
    for i, part in enumerate(loc):
        candidate = out + (part,)
        is_last = i == len(loc) - 1
        if candidate in doc.positions or is_last or isinstance(part, int):
            out = candidate
        elif isinstance(part, str) and not any(
            k[: len(candidate)] == candidate for k in doc.positions
        ):
            continue
        else:
            out = candidate
    return out


_TYPE_WORDS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a block of keys",
    "model_type": "a block of keys",
    "model_attributes_type": "a block of keys",
}


_BOUND_WORDS = {
    "greater_than_equal": ("small: at least {}", "ge"),
    "greater_than": ("small: more than {}", "gt"),
    "less_than_equal": ("large: at most {}", "le"),
    "less_than": ("large: less than {}", "lt"),
}
"""pydantic's number bounds in words: `the number 0 is too small: at least 1`."""


_SCALAR_MEMBERS = frozenset({"str", "int", "float", "bool"})


def describe_value(value: Any) -> str:
    """How a sales-ops person would name what they typed."""
    if value is None:
        return "nothing (empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}` (true/false)"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text `{shown}`"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a block of keys"
    return type(value).__name__


def validation_problems(
    doc: YamlDocument,
    exc: ValidationError,
    model: type[BaseModel] | None = None,
    *,
    kind_of_file: str = "mapping",
) -> list[Problem]:
    """Every pydantic error as a Problem with a position, a rule and, where we can, a fix.

    `kind_of_file` names the file in the rules (`config keys are fixed`), so a typo in
    ga4sync.yaml does not send anyone through the mapping files."""
    problems: list[Problem] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors(include_url=False):
        loc = _clean_loc(doc, tuple(err["loc"]))
        kind = str(err["type"])
        if loc and loc[-1] in _SCALAR_MEMBERS and loc not in doc.positions:
            # A union of plain values (text or number) failed as a whole: say so once.
            loc = loc[:-1]
            kind = "scalar_union"
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        rule, suggestion = "", ""
        if kind == "extra_forbidden":
            allowed = _sibling_keys(model, loc[:-1])
            msg = f"unknown key `{loc[-1]}`"
            rule = f"{kind_of_file} keys are fixed; typos are refused, not ignored"
            hint = suggest(str(loc[-1]), allowed)
            if hint:
                suggestion = f"did you mean `{hint}`?"
            elif allowed:
                suggestion = "allowed here: " + ", ".join(allowed)
        elif kind == "missing":
            key = loc[-1]
            desc = _field_description(model, loc)
            problem = problem_at(
                doc,
                loc[:-1],
                f"required key `{key}` is missing",
                "required key",
                f"add `{key}:`" + (f" ({desc})" if desc else ""),
            )
            problems.append(Problem(**{**problem.__dict__, "where": dotted(loc)}))
            continue
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            # A block chosen by one of its keys (a connector's `type:`): say it as for any key.
            ctx = err.get("ctx") or {}
            key = str(ctx.get("discriminator", "type")).strip("'\"")
            if kind == "union_tag_not_found":
                problem = problem_at(
                    doc, loc, f"required key `{key}` is missing", "required key", f"add `{key}:`"
                )
                problems.append(Problem(**{**problem.__dict__, "where": dotted((*loc, key))}))
                continue
            loc = (*loc, key)
            options = [o.strip(" '\"") for o in str(ctx.get("expected_tags", "")).split(",")]
            options = [o for o in options if o]
            msg = f"{describe_value(ctx.get('tag'))} is not one of {', '.join(options)}"
            rule = "allowed values"
            hint = suggest(str(ctx.get("tag")), options)
            if hint:
                suggestion = f"did you mean `{hint}`?"
        elif kind == "scalar_union":
            msg = f"expected text or a number, got {describe_value(err.get('input'))}"
            rule = "value type"
        elif kind in _TYPE_WORDS:
            msg = f"expected {_TYPE_WORDS[kind]}, got {describe_value(err.get('input'))}"
            rule = "value type"
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            msg = f"{describe_value(err.get('input'))} is not one of {expected}"
            rule = "allowed values"
            options = [o.strip(" '") for o in str(expected).replace(" or ", ",").split(",")]
            hint = suggest(str(err.get("input")), [o for o in options if o])
            if hint:
                suggestion = f"did you mean `{hint}`?"
        elif kind == "string_pattern_mismatch":
            msg = f"{describe_value(err.get('input'))} has the wrong form"
            rule = "value format"
            pattern = str((err.get("ctx") or {}).get("pattern", ""))
            upper = str(err.get("input")).strip().upper()
            if pattern and re.fullmatch(pattern, upper):
                suggestion = f"write `{upper}`"
            else:
                suggestion = _field_description(model, loc)
        elif kind == "value_error":
            rule = "allowed values"
        elif kind in _BOUND_WORDS:
            word, key = _BOUND_WORDS[kind]
            bound = (err.get("ctx") or {}).get(key, "")
            msg = f"{describe_value(err.get('input'))} is too {word.format(bound)}"
            rule = "allowed range"
        elif kind == "string_too_long":
            limit = (err.get("ctx") or {}).get("max_length", "")
            msg = f"is {len(str(err.get('input')))} characters long; at most {limit}"
            rule = "value length"
            suggestion = "shorten it"
        elif kind in ("string_too_short", "too_short"):
            msg = "is empty" if kind == "string_too_short" else "the list is empty"
            rule = "required value"
            suggestion = _field_description(model, loc)
        if (loc, msg) in seen:
            continue
        seen.add((loc, msg))
        problems.append(problem_at(doc, loc, msg, rule, suggestion))
    return _merge_typos(problems)


def _merge_typos(problems: list[Problem]) -> list[Problem]:
    """`evnt` unknown + `event` missing is one typo: keep only the line that names both."""
    suggested = {
        (p.where.rsplit(".", 1)[0] if "." in p.where else "", p.suggestion)
        for p in problems
        if p.message.startswith("unknown key")
    }
    out = []
    for p in problems:
        if p.message.startswith("required key"):
            parent = p.where.rsplit(".", 1)[0] if "." in p.where else ""
            key = p.where.rsplit(".", 1)[-1]
            if (parent, f"did you mean `{key}`?") in suggested:
                continue
        out.append(p)
    return out


def format_validation_error(
    doc: YamlDocument,
    exc: ValidationError,
    model: type[BaseModel] | None = None,
    *,
    kind_of_file: str = "mapping",
) -> list[str]:
    """The same problems as text lines, for callers that only print them (the config file)."""
    return [str(p) for p in validation_problems(doc, exc, model, kind_of_file=kind_of_file)]


def suggest(word: str, candidates: list[str]) -> str | None:
    """The closest candidate to a misspelt word, case-insensitive first."""
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return lowered[word.lower()]
    best = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if best:
        return best[0]
    best = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[best[0]] if best else None


def _annotation_at(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> Any:
    """The type that validates the value at `loc`, found by walking the model along it."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    return current


def _step(annotation: Any, part: str | int) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _step(get_args(annotation)[0], part)
    if origin in (Union, UnionType):
        for arg in get_args(annotation):
            found = _step(arg, part)
            if found is not None:
                return found
        return None
    if origin is list:
        return get_args(annotation)[0] if isinstance(part, int) else None
    if origin is dict:
        return get_args(annotation)[1] if isinstance(part, str) else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = _field_named(annotation, str(part))
        return field.annotation if field is not None else None
    return None


def _field_named(model: type[BaseModel], name: str) -> Any:
    for attr, field in model.model_fields.items():
        if name in (attr, field.alias):
            return field
    return None


def _model_at(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> Any:
    return _model_in(_annotation_at(model, loc))


def _sibling_keys(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> list[str]:
    """Field names valid at `loc` (aliases as written in YAML, internal names hidden)."""
    current = _model_at(model, loc)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [
            f.alias or name
            for name, f in current.model_fields.items()
            if not (f.alias or name).startswith("$")
        ]
    return []


def _field_description(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> str:
    current = _model_at(model, loc[:-1])
    if isinstance(current, type) and issubclass(current, BaseModel):
        field = _field_named(current, str(loc[-1]))
        if field is not None and field.description:
            return str(field.description).rstrip(".")
    return ""


def _model_in(annotation: Any) -> Any:
    """The first pydantic model inside an annotation (through Optional, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin is Annotated:
        return _model_in(get_args(annotation)[0])
    if origin in (Union, UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
