"""Stage names in mappings -> CRM stage ids: pure lookups, no CRM needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from ga4sync.connectors.catalog import StageOption, StageVocabulary
from ga4sync.core.errors import MappingError
from ga4sync.mapping.load import load_mapping
from ga4sync.pipeline.stage_vocabulary import canonical_stages, lookup

VOCAB = StageVocabulary(
    "dealstage",
    "HubSpot pipelines of deals",
    (
        StageOption("closedwon", "Closed won", "Sales Pipeline", "default"),
        StageOption("closedlost", "Closed lost", "Sales Pipeline", "default"),
        StageOption("1002", "Closed won", "Renewals", "renewals"),
        StageOption("1003", "Contract sent", "Renewals", "renewals"),
        StageOption("1004", "Proposal/Price Quote", "Renewals", "renewals"),
    ),
)


@pytest.mark.parametrize(
    ("name", "ids"),
    [
        ("closedwon", ["closedwon"]),
        ("CLOSEDWON", ["closedwon"]),
        ("1002", ["1002"]),
        ("Contract sent", ["1003"]),
        (" contract SENT ", ["1003"]),
        ("Renewals/Closed won", ["1002"]),
        ("renewals/closed won", ["1002"]),  # by pipeline id too
        ("Sales Pipeline/Closed won", ["closedwon"]),
        ("Closed won", ["closedwon", "1002"]),  # ambiguous
        ("Closed wun", []),
        ("Nowhere/Closed won", []),  # no such pipeline: unknown, not a guess
        ("Proposal/Price Quote", ["1004"]),  # a label that has a slash of its own
    ],
)
def test_lookup(name: str, ids: list[str]) -> None:
    assert [m.id for m in lookup(VOCAB, name).matches] == ids


def _mapping(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        "object: deals\nstage_field: dealstage\nclient_id_field: ga_client_id\nrules:\n" + rules
    )
    return path


def test_canonical_rules_hold_ids_and_keep_wildcards(tmp_path: Path) -> None:
    loaded = load_mapping(
        _mapping(tmp_path, '  - {from: "*", to: [Contract sent, Renewals/Closed won], event: x}\n')
    )
    canonical, warnings = canonical_stages(loaded, VOCAB)
    rule = canonical.model.rules[0]
    assert rule.from_values() == ["*"] and rule.to_values() == ["1003", "1002"]
    assert warnings == []
    assert loaded.model.rules[0].to_values() == ["Contract sent", "Renewals/Closed won"]


def test_every_ambiguous_place_is_reported_with_its_line(tmp_path: Path) -> None:
    path = _mapping(
        tmp_path,
        "  - name: a\n    to: Closed won\n    event: x\n"
        "  - name: b\n    from: [closedlost, Closed won]\n    to: closedwon\n    event: y\n",
    )
    with pytest.raises(MappingError) as caught:
        canonical_stages(load_mapping(path), VOCAB)
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f'{path}:6:5: rule 1 ("a"), to: stage label `Closed won` is in 2')
    assert problems[1].startswith(f'{path}:9:24: rule 2 ("b"), from: stage label `Closed won`')
