"""Read a mapping file into a checked, ready-to-apply object, or every problem with file:line.

`check_mapping` is what `ga4sync mappings validate` runs; `load_mapping` is what the engine
runs, and refuses exactly what validate reports, so a file that validates is a file the
daemon accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
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
    rule_ref,
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
            [Problem(shown, ln, col, "", *_plain_yaml(msg)) for ln, col, msg in exc.spots],
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
        findings += check_fields(
            field_refs(model), catalog, optional=frozenset(model.optional_fields())
        )
        findings += check_stages(list(enumerate(model.rules)), catalog)
    problems += [problem_at(doc, f.loc, f.message, f.rule, f.suggestion) for f in findings]
    problems = [_editor_numbering(p, doc.data) for p in problems]
    problems.sort(key=lambda p: (p.line, p.column))
    if problems or model is None:
        return MappingCheck(shown, problems)
    return MappingCheck(shown, [], LoadedMapping(shown, model, doc.sha256[:16], conditions, doc))


_YAML_WORDS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"mapping values are not allowed here"),
        "a `key: value` is where it cannot be: this line is indented more or less than the "
        "lines it belongs with, or its value contains `: `",
        "line it up with the keys above it (same number of spaces), or put the value in quotes",
    ),
    (
        re.compile(r"expected <block end>, but found|expected '<document start>', but found"),
        "this line is indented differently from the block it belongs to",
        "indent it with exactly as many spaces as the lines above it at the same level",
    ),
    (
        re.compile(r"found character '\\t' that cannot start any token"),
        "a tab is used here; YAML files may only use spaces",
        "replace the tab with spaces",
    ),
    (
        re.compile(r"expected ',' or '\]'.*flow sequence that starts at line (\d+)"),
        "the list in square brackets opened at line {0} is not closed",
        "end the list with `]` on the same line, or quote the text containing [ or ]",
    ),
    (
        re.compile(r"expected ',' or '\}'.*flow mapping that starts at line (\d+)"),
        "the block in curly braces opened at line {0} is not closed",
        "end it with `}`, or quote the text containing { or }",
    ),
    (
        re.compile(r"end of stream.*quoted scalar that starts at line (\d+)"),
        "the quote opened at line {0} is never closed",
        "add the closing quote at the end of that value",
    ),
    (
        re.compile(r"while scanning an alias"),
        "a lone * is read as a YAML alias",
        'to match any stage write "*" in quotes',
    ),
)
"""PyYAML's parser words -> what a sales-ops person reads: what is wrong and how to fix it."""


def _plain_yaml(message: str) -> tuple[str, str, str]:
    """(message, rule, suggestion) for a YAML reading problem.

    PyYAML's own words ("mapping values are not allowed here") stay in the rule part in
    parentheses, so the line still matches what a search engine or a colleague knows."""
    parser_words = message.removeprefix("not valid YAML: ")
    for pattern, words, fix in _YAML_WORDS:
        found = pattern.search(parser_words)
        if found:
            return (
                f"not valid YAML: {words.format(*found.groups())}",
                f"YAML parser: {parser_words}",
                fix,
            )
    return message, "file format", ""


def _editor_numbering(problem: Problem, data: object) -> Problem:
    """`rules[2].when[0]` -> `rule 3 ("won"), when #1`: counted from 1 as an editor counts the
    `- ` items, and named, so the problem is found without counting list items from zero."""
    found = _RULE_WHERE.match(problem.where)
    if not found:
        return problem
    index = int(found.group(1))
    raw = data.get("rules") if isinstance(data, dict) else None
    item = raw[index] if isinstance(raw, list) and index < len(raw) else None
    name = item.get("name") if isinstance(item, dict) else None
    rest = re.sub(r"\[(\d+)\]", lambda m: f" #{int(m.group(1)) + 1}", found.group(2))
    where = rule_ref(index, name) + (f", {rest.lstrip('.')}" if rest else "")
    return replace(problem, where=where)


_RULE_WHERE = re.compile(r"^rules\[(\d+)\](.*)$")


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
