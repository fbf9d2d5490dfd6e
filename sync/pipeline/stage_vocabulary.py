"""Stage names in a mapping -> the ids the CRM stores, before any transition is mapped.

HubSpot's `dealstage` holds stage ids (`closedwon`, `12345678`) while people write labels
(`Closed won`), and labels repeat across pipelines. A connector that knows its stages offers a
`StageVocabulary` (connectors/catalog.py); `canonical_stages` rewrites each rule's `from`/`to`
to ids once per capture plan (pipeline/plan.py), so `ga4sync.mapping.apply` stays a pure,
case-insensitive comparison of ids. A label found in two pipelines is refused with both
pipelines and the file:line of the rule, because guessing would send the wrong pipeline's
conversions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ga4sync.connectors.base import Connector
from ga4sync.connectors.catalog import StageOption, StageVocabulary
from ga4sync.core.errors import MappingError
from ga4sync.mapping.checks import rule_ref
from ga4sync.mapping.load import LoadedMapping
from ga4sync.mapping.model import Rule


@dataclass(frozen=True)
class StageName:
    """What a name in a mapping means: one id, several candidates (ambiguous), or nothing."""

    name: str
    matches: tuple[StageOption, ...]


def lookup(vocabulary: StageVocabulary, name: str) -> StageName:
    key = name.strip().lower()
    by_id = [o for o in vocabulary.options if o.id.lower() == key]
    if by_id:
        return StageName(name, (by_id[0],))
    if "/" in key:
        group, _, label = key.rpartition("/")
        qualified = [
            o
            for o in vocabulary.options
            if o.label.strip().lower() == label.strip()
            and group.strip() in {(o.group or "").strip().lower(), (o.group_id or "").lower()}
        ]
        if qualified:
            return StageName(name, (qualified[0],))
    by_label = {o.id: o for o in vocabulary.options if o.label.strip().lower() == key}
    return StageName(name, tuple(by_label.values()))


def canonical_stages(
    mapping: LoadedMapping, vocabulary: StageVocabulary
) -> tuple[LoadedMapping, list[str]]:
    """The mapping with stage ids in every rule, and warnings for names the CRM does not know.

    Raises:
        MappingError: a label matches stages in several pipelines; one problem per place,
            each with file:line, the pipelines, and the qualified names to write instead.
    """
    problems: list[str] = []
    warnings: list[str] = []
    rules: list[Rule] = []
    for i, rule in enumerate(mapping.model.rules):
        resolved: dict[str, list[str]] = {}
        for kind in ("from", "to"):
            values = rule.from_values() if kind == "from" else rule.to_values()
            out: list[str] = []
            for j, value in enumerate(values):
                if value == "*":
                    out.append(value)
                    continue
                found = lookup(vocabulary, value)
                where = (
                    f"{_where(mapping, ('rules', i, kind, j))}: {rule_ref(i, rule.name)}, {kind}"
                )
                if len(found.matches) == 1:
                    out.append(found.matches[0].id)
                elif not found.matches:
                    out.append(value)
                    warnings.append(
                        f"{where}: stage `{value}` is not among the {vocabulary.field} values in "
                        f"the {vocabulary.source}; rule `{rule.label(i)}` will not match it"
                    )
                else:
                    problems.append(_ambiguous(where, rule.label(i), value, found.matches))
            resolved[kind] = out
        rules.append(rule.model_copy(update={"from_": resolved["from"], "to": resolved["to"]}))
    if problems:
        raise MappingError(problems)
    model = mapping.model.model_copy(update={"rules": rules})
    return replace(mapping, model=model), warnings


def _ambiguous(where: str, rule: str, value: str, matches: tuple[StageOption, ...]) -> str:
    pipelines = " and ".join(f"`{m.group or '?'}` (id {m.id})" for m in matches)
    qualified = " or ".join(f"`{m.group}/{m.label}`" for m in matches if m.group)
    return (
        f"{where}: stage label `{value}` is in {len(matches)} pipelines: {pipelines} "
        f"(rule `{rule}`: a stage must name exactly one stage) — write {qualified}, "
        "or the stage id"
    )


def _where(mapping: LoadedMapping, loc: tuple[str | int, ...]) -> str:
    if mapping.document is None:
        return mapping.path
    return mapping.document.where(loc)


def with_crm_stage_ids(
    connector: Connector, mapping: LoadedMapping
) -> tuple[LoadedMapping, list[str]]:
    """Canonical ids when the connector lists its stages, else the mapping unchanged."""
    vocabulary = connector.stage_vocabulary()
    if vocabulary is None:
        return mapping, []
    return canonical_stages(mapping, vocabulary)
