"""Checks across a mapping's rules and against the CRM: duplicates, unreachable rules, fields.

Pure functions over the parsed model. Each finding names the value's location, what is wrong,
the mapping rule it breaks, and what to do, so `ga4sync mappings validate` can print every
problem at once and the daemon can refuse a broken edit before it sends anything. GA4's own
naming rules are in `ga4_checks.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ga4sync.core.validation_errors import suggest
from ga4sync.core.yamlsource import Loc
from ga4sync.mapping.model import FieldParam, MappingFile, Rule


@dataclass(frozen=True)
class Finding:
    """A problem found by a check, before it is pinned to a line of the file."""

    loc: Loc
    message: str
    rule: str
    suggestion: str = ""


@dataclass(frozen=True)
class FieldCatalog:
    """The fields an object really has, as the CRM listed them (Salesforce describe, ...)."""

    object_type: str
    fields: frozenset[str]
    source: str
    """Where the list came from, e.g. `Salesforce describe of Opportunity`."""
    stages: frozenset[str] | None = None
    """Values and labels the stage field can hold (picklist, pipeline stages), when known."""
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Lower-cased stage labels found in several pipelines -> the `Pipeline/Label` names."""
    warnings: tuple[str, ...] = ()
    """The CRM's setup would let a run succeed while seeing less (history not tracked)."""


# -- rules together ----------------------------------------------------------------------------
def _norm(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values)


def _covers(wide: Iterable[str], narrow: Iterable[str]) -> bool:
    """True when every stage in `narrow` is matched by `wide`."""
    w, n = _norm(wide), _norm(narrow)
    return "*" in w or ("*" not in n and n <= w)


def _conditions_key(rule: Rule) -> frozenset[str]:
    return frozenset(" ".join(c.split()).lower() for c in rule.when)


def rule_ref(index: int, name: object = None) -> str:
    """A rule as an editor counts it: `rule 3 ("won")` is the third `- ` under `rules:`."""
    return f"rule {index + 1}" + (f' ("{name}")' if isinstance(name, str) and name else "")


def editor_location(loc: tuple[str | int, ...], rule_names: list[str | None]) -> str:
    """`("rules", 2, "when", 0)` -> `rule 3 ("won"), when #1`; other places dotted as before.

    Every message about a mapping, from validate or from a run, counts rules as the file's
    reader does (from 1, by name), so the two never point at different rules.
    """
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        index = loc[1]
        name = rule_names[index] if index < len(rule_names) else None
        rest = ""
        for part in loc[2:]:
            rest += f" #{part + 1}" if isinstance(part, int) else (f".{part}" if rest else part)
        return rule_ref(index, name) + (f", {rest}" if rest else "")
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _ref(index: int, rule: Rule) -> str:
    return rule_ref(index, rule.name)


def check_rules_together(rules: list[tuple[int, Rule]]) -> list[Finding]:
    """Duplicates and rules that can never match because an earlier rule always wins."""
    out: list[Finding] = []
    named: dict[str, int] = {}
    for j, rule in rules:
        if rule.name is None:
            continue
        key = rule.name.strip().lower()
        if key in named:
            out.append(
                Finding(
                    ("rules", j, "name"),
                    f"rule name `{rule.name}` is already used by {rule_ref(named[key])}",
                    "rule names identify rules in reports and errors",
                    "give each rule its own name",
                )
            )
        else:
            named[key] = j
    for pos, (j, later) in enumerate(rules):
        for i, earlier in rules[:pos]:
            same_stages = _norm(earlier.from_values()) == _norm(later.from_values()) and _norm(
                earlier.to_values()
            ) == _norm(later.to_values())
            if same_stages and _conditions_key(earlier) == _conditions_key(later):
                out.append(
                    Finding(
                        ("rules", j),
                        f"duplicate rule: same from/to/when as {_ref(i, earlier)}",
                        "the first matching rule wins, so this one never sends",
                        "delete one of them, or merge their params",
                    )
                )
                break
            if (
                not earlier.when
                and _covers(earlier.from_values(), later.from_values())
                and _covers(earlier.to_values(), later.to_values())
            ):
                out.append(
                    Finding(
                        ("rules", j),
                        f"rule can never match: {_ref(i, earlier)} has no `when` and already "
                        "catches every move this rule describes",
                        "the first matching rule wins",
                        f"move this rule above rule {i + 1}, or narrow rule {i + 1}'s from/to",
                    )
                )
                break
    return out


def check_identity_fields(model: MappingFile) -> list[Finding]:
    """Personal data must not reach GA4 unhashed: user_id may not be the email or phone field."""
    out: list[Finding] = []
    uid = model.user_id_field
    if uid and uid in (model.email_field, model.phone_field):
        out.append(
            Finding(
                ("user_id_field",),
                f"user_id_field `{uid}` is also the email or phone field",
                "GA4 forbids personal data in user_id",
                "use an opaque id such as Id or ContactId; email and phone go hashed in user_data",
            )
        )
    return out


def field_refs(model: MappingFile) -> list[tuple[Loc, str]]:
    """Every place the mapping names a CRM field, for checking against the CRM's field list."""
    refs: list[tuple[Loc, str]] = [
        (("stage_field",), model.stage_field),
        (("client_id_field",), model.client_id_field),
    ]
    for key in ("session_id_field", "user_id_field", "email_field", "phone_field"):
        value = getattr(model, key)
        if value:
            refs.append(((key,), value))
    if model.consent:
        for key in ("ad_user_data_field", "ad_personalization_field"):
            value = getattr(model.consent, key)
            if value:
                refs.append((("consent", key), value))
    for name, spec in model.user_properties.items():
        if isinstance(spec, FieldParam):
            refs.append((("user_properties", name, "field"), spec.field))
    for i, rule in enumerate(model.rules):
        for name, spec in rule.params.items():
            if isinstance(spec, FieldParam):
                refs.append((("rules", i, "params", name, "field"), spec.field))
        for j, cond in enumerate(rule.when):
            words = cond.split()
            if words:
                refs.append((("rules", i, "when", j), words[0]))
    return refs


def check_fields(
    refs: list[tuple[Loc, str]], catalog: FieldCatalog, *, optional: frozenset[str] = frozenset()
) -> list[Finding]:
    """Field names the CRM does not know, with the closest real name as the fix.

    A field read only by `optional: true` params may be missing: the run reads it as empty."""
    out: list[Finding] = []
    known = sorted(catalog.fields)
    for loc, name in refs:
        if name in catalog.fields or name in optional:
            continue
        hint = suggest(name, known)
        out.append(
            Finding(
                loc,
                f"unknown field `{name}` on {catalog.object_type}"
                + (f", did you mean `{hint}`?" if hint else ""),
                f"fields come from the {catalog.source}",
                f"write `{hint}`" if hint else "use the field's API name, not its label",
            )
        )
    return out


def check_stages(rules: list[tuple[int, Rule]], catalog: FieldCatalog) -> list[Finding]:
    """Stage names the CRM does not know: a typo here means the rule silently never fires."""
    if not catalog.stages:
        return []
    known = {v.strip().lower() for v in catalog.stages}
    choices = sorted(catalog.stages)
    out: list[Finding] = []
    for i, rule in rules:
        for kind, values in (("from", rule.from_values()), ("to", rule.to_values())):
            for j, value in enumerate(values):
                qualified = catalog.ambiguous.get(value.strip().lower())
                if qualified:
                    out.append(
                        Finding(
                            ("rules", i, kind, j),
                            f"stage label `{value}` is in {len(qualified)} pipelines; a rule "
                            "must name exactly one stage",
                            "the same label in several pipelines is refused at run time",
                            "write " + " or ".join(f"`{q}`" for q in qualified) + ", or the id",
                        )
                    )
                    continue
                if value == "*" or not value or value.strip().lower() in known:
                    continue
                hint = suggest(value, choices)
                out.append(
                    Finding(
                        ("rules", i, kind, j),
                        f"unknown stage `{value}`" + (f", did you mean `{hint}`?" if hint else ""),
                        f"stages come from the {catalog.source}",
                        f"write `{hint}`" if hint else "use a stage label or id the CRM lists",
                    )
                )
    return out
