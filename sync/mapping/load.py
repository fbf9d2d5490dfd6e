"""Read a mapping file into a checked, ready-to-apply object, or every problem with file:line.

`check_mapping` is what `ga4sync mappings validate` runs; `load_mapping` is what the engine
runs, and refuses exactly what validate reports, so a file that validates is a file the
daemon accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ga4sync.core.errors import MappingError
from ga4sync.core.validation_errors import Problem, problem_at, validation_problems
from ga4sync.core.yamlsource import YamlDocument, YamlSourceError, load_yaml_file
from ga4sync.mapping.checks import (
    FieldCatalog,
    Finding,
    check_fields,
    check_identity_fields,
    check_rules_together,
    check_stages,
    field_refs,
)
from ga4sync.mapping.conditions import Condition, ConditionSyntaxError, parse_condition
from ga4sync.mapping.ga4_checks import check_rule, check_user_properties
from ga4sync.mapping.model import MappingFile, Rule
from pydantic import ValidationError


@dataclass
class LoadedMapping:
    path: str
    model: MappingFile
    content_hash: str
    conditions: list[list[Condition]] = field(default_factory=list)
    """conditions[i] are rule i's parsed `when:` entries."""
    document: YamlDocument | None = None
    """The parsed file with its positions, so later checks (CRM stage names) can cite lines."""


@dataclass
class MappingCheck:
    """The outcome of checking one file: the mapping when it is good, else every problem."""

    path: str
    problems: list[Problem]
    loaded: LoadedMapping | None = None


def load_mapping(path: str | Path) -> LoadedMapping:
    """Raises MappingError listing every problem, each as `file:line:col: where: what`."""
    result = check_mapping(path)
    if result.loaded is None:
        raise MappingError([str(p) for p in result.problems])
    return result.loaded


def check_mapping(path: str | Path, catalog: FieldCatalog | None = None) -> MappingCheck:
    """Every problem in one file; with a catalog, field names are checked against the CRM."""
    path = Path(path)
    shown = str(path)
    try:
        doc = load_yaml_file(path)
    except YamlSourceError as exc:
        return MappingCheck(
            shown,
            [
                Problem(shown, ln, col, "", msg, "file format", _yaml_hint(msg))
                for ln, col, msg in exc.spots
            ],
        )
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else "not a block of keys"
        return MappingCheck(
            shown,
            [
                problem_at(
                    doc,
                    (),
                    f"the mapping file is {what}",
                    "a mapping is a block of keys",
                    "start from mappings/salesforce_opportunity.yaml; it needs object, "
                    "stage_field, client_id_field and rules",
                )
            ],
        )
    problems: list[Problem] = []
    model: MappingFile | None = None
    try:
        model = MappingFile.model_validate(doc.data)
    except ValidationError as exc:
        problems += validation_problems(doc, exc, MappingFile)
    findings, conditions = _check_parts(doc.data, model, problems)
    if model is not None and catalog is not None:
        findings += check_fields(field_refs(model), catalog)
        findings += check_stages(list(enumerate(model.rules)), catalog)
    problems += [problem_at(doc, f.loc, f.message, f.rule, f.suggestion) for f in findings]
    problems.sort(key=lambda p: (p.line, p.column))
    if problems or model is None:
        return MappingCheck(shown, problems)
    return MappingCheck(shown, [], LoadedMapping(shown, model, doc.sha256[:16], conditions, doc))


def _yaml_hint(message: str) -> str:
    """The usual cause of YAML's more cryptic messages, in a mapping file."""
    if "while scanning an alias" in message:
        return 'a lone * means "alias" in YAML; to match any stage write "*" in quotes'
    if "mapping values are not allowed here" in message:
        return "check the indentation of this line, or put a value containing `: ` in quotes"
    if "found character '\\t'" in message:
        return "replace the tab with spaces"
    return ""


def _check_parts(
    data: dict[str, Any], model: MappingFile | None, shape_problems: list[Problem]
) -> tuple[list[Finding], list[list[Condition]]]:
    """Checks that also run when another part of the file is broken, so all show at once."""
    findings: list[Finding] = []
    rules = _usable_rules(data, model, shape_problems)
    currency = data.get("currency") if isinstance(data.get("currency"), str) else None
    conditions: list[list[Condition]] = []
    for i, rule in rules:
        findings += check_rule(i, rule, currency)
        parsed: list[Condition] = []
        for j, text in enumerate(rule.when):
            try:
                parsed.append(parse_condition(text))
            except ConditionSyntaxError as exc:
                findings.append(
                    Finding(
                        ("rules", i, "when", j),
                        str(exc),
                        "conditions are `Field op value`; nothing in a mapping runs as code",
                    )
                )
        conditions.append(parsed)
    findings += check_rules_together(rules)
    if model is not None:
        findings += check_user_properties(model.user_properties)
        findings += check_identity_fields(model)
    elif isinstance(data.get("user_properties"), dict):
        findings += check_user_properties(
            {k: v for k, v in data["user_properties"].items() if not isinstance(v, dict)}
            | {k: None for k, v in data["user_properties"].items() if isinstance(v, dict)}
        )
    return findings, conditions


def _usable_rules(
    data: dict[str, Any], model: MappingFile | None, shape_problems: list[Problem]
) -> list[tuple[int, Rule]]:
    """The rules that are well-formed on their own, with their index in the file."""
    if model is not None:
        return list(enumerate(model.rules))
    raw = data.get("rules")
    if not isinstance(raw, list):
        return []
    broken = {
        int(p.where.split("]")[0][len("rules[") :])
        for p in shape_problems
        if p.where.startswith("rules[")
    }
    known = {f.alias or name for name, f in Rule.model_fields.items()}
    out: list[tuple[int, Rule]] = []
    for i, item in enumerate(raw):
        if i in broken and isinstance(item, dict):
            # An unknown key is already reported; the rest of the rule still gets checked.
            item = {k: v for k, v in item.items() if k in known}
        try:
            out.append((i, Rule.model_validate(item)))
        except ValidationError:
            continue
    return out
