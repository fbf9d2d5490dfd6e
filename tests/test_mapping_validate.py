"""`ga4sync mappings validate` over a corpus of broken files: one clear line per problem, exit 1.

Each corpus file breaks one rule (a few break several on purpose); the table below says on
which line the problem must be reported and what the line must say. No file may produce a
traceback, and every problem line has the shape `file:line:column: ...`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.core.yamlsource import MAX_FILE_BYTES
from ga4sync.mapping.load import check_mapping, load_mapping
from ga4sync.mappings import MAPPINGS_DIR

CORPUS = Path(__file__).parent / "data" / "broken_mappings"
PROBLEM_LINE = re.compile(r"^(?P<path>[^\n]+?):(?P<line>\d+):(?P<col>\d+): (?P<what>.+)$")

# file -> [(line, text the problem line must contain), ...]: every problem the file has.
EXPECTED: dict[str, list[tuple[int, str]]] = {
    "anchors_bomb.yaml": [(4, "expands to more than 50,000 values (YAML anchors")],
    "bad_condition.yaml": [(7, "cannot read condition `Amount between 1 and 5`")],
    "bad_event_name.yaml": [(6, "event name `Closed Won!` is not allowed (GA4 NAME_INVALID")],
    "bad_param_name.yaml": [(8, "param name `deal size` is not allowed")],
    "bad_param_type.yaml": [(8, "`numbr` is not one of 'number'")],
    "bad_yaml_indentation.yaml": [
        (6, "not valid YAML: a `key: value` is where it cannot be: this line is indented")
    ],
    "bad_yaml_unclosed_bracket.yaml": [
        (6, "the list in square brackets opened at line 5 is not closed")
    ],
    "bad_yaml_unclosed_quote.yaml": [(7, "the quote opened at line 5 is never closed")],
    "condition_in_without_list.yaml": [(9, "`in` needs a list in square brackets")],
    "control_character.yaml": [(5, "control character #x0007 is not allowed")],
    "csv_bad_timezone.yaml": [(7, "csv.timezone: `CET+1` is not an IANA time zone")],
    "csv_time_format_reads_no_date.yaml": [
        (7, "`%H:%M` is not a strptime format that reads a date")
    ],
    "consent_bad_default.yaml": [(6, "consent.default: `true` (true/false) is not one of")],
    "currency_lowercase.yaml": [(4, "currency: the text `usd` has the wrong form")],
    "deep_nesting.yaml": [(8, "nested more than 40 levels deep")],
    "default_wrong_type.yaml": [(8, "default `n/a` is not a number")],
    "detection_typo.yaml": [(4, "did you mean `history`?")],
    "duplicate_key.yaml": [(4, "key `stage_field` appears twice")],
    "duplicate_rule_names.yaml": [(8, "rule name `Closed` is already used by rule 1")],
    "duplicate_rules.yaml": [
        (7, 'rule 2 ("won again"): duplicate rule: same from/to/when as rule 1')
    ],
    "empty.yaml": [(1, "the mapping file is empty")],
    "empty_client_id_field.yaml": [(3, "client_id_field: is empty (required value)")],
    "empty_rules.yaml": [(4, "rules: the list is empty")],
    "event_name_capitals.yaml": [(7, "differs from GA4's recommended `purchase` only in capitals")],
    "event_name_too_long.yaml": [(6, "is 47 characters long (GA4 VALUE_OUT_OF_BOUNDS")],
    "fixed_value_infinite.yaml": [(8, "the fixed value `inf` is not a number GA4 can take")],
    "items_param.yaml": [(8, "`items` needs a list of products")],
    "many_problems.yaml": [
        (3, "unknown key `client_id` (mapping keys are fixed"),
        (6, "event name `session_start` is reserved by GA4 (GA4 NAME_RESERVED)"),
        (8, "event name `close unconvert` is not allowed"),
        (10, "param name `_reason` is not allowed"),
    ],
    "merge_key.yaml": [(7, "YAML merge keys (<<) are not supported")],
    "missing_client_id_field.yaml": [(1, "required key `client_id_field` is missing")],
    "missing_rules.yaml": [(1, "required key `rules` is missing")],
    "not_utf8.yaml": [(5, "file is not UTF-8 text (byte 0xfc here)")],
    "object_too_long.yaml": [(1, "object: is 130 characters long; at most 128")],
    "once_per_record_not_bool.yaml": [(7, "expected true or false, got the text `sometimes`")],
    "only_comments.yaml": [(1, "the mapping file is empty")],
    "param_field_typo.yaml": [(8, "unknown key `fild` (mapping keys are fixed")],
    "pii_literal.yaml": [(8, "looks like an email address or phone number")],
    "python_tag.yaml": [(8, "YAML tag `!python/object/apply:os.system` is not allowed")],
    "purchase_without_transaction_id.yaml": [(7, "`purchase` has no transaction_id param")],
    "resend_if_unknown_not_purchase.yaml": [(7, "resend_if_unknown is on for an event")],
    "reserved_event.yaml": [(6, "event name `session_start` is reserved by GA4")],
    "reserved_param_name.yaml": [(8, "param name `ga_source` is reserved by GA4")],
    "reserved_user_property.yaml": [
        (5, "user property name `first_open_time` is reserved by GA4"),
        (6, "user property name `customer_segment_from_salesforce` is not allowed"),
    ],
    "rules_not_a_list.yaml": [(4, "rules: expected a list, got a block of keys")],
    "stage_is_yes.yaml": [(5, "rule 1, to: a stage reads as true/false")],
    "star_unquoted.yaml": [(5, "not valid YAML: a lone * is read as a YAML alias")],
    "stage_listed_twice.yaml": [(5, "stage `closed won` is listed twice")],
    "tabs.yaml": [(5, "tab used for indentation"), (6, "tab used for indentation")],
    "too_many_params.yaml": [(7, "26 params; GA4 keeps at most 25 per event")],
    "top_level_list.yaml": [(1, "the mapping file is not a block of keys")],
    "unknown_rule_key.yaml": [(6, "unknown key `evnt`")],
    "unknown_top_key.yaml": [(2, "unknown key `stage_feild`")],
    "unreachable_list.yaml": [(8, 'rule 2 ("lost"): rule can never match: rule 1 ("closed")')],
    "unreachable_rule.yaml": [(8, 'rule 2 ("won"): rule can never match: rule 1 ("anything")')],
    "user_id_is_email.yaml": [(4, "user_id_field `Email` is also the email or phone field")],
    "utf16_bom.yaml": [(1, "file is saved as UTF-16")],
    "utf16_no_bom.yaml": [(1, "file is saved as UTF-16 or UTF-32 (it is full of zero bytes)")],
    "utf8_bom_unknown_key.yaml": [(7, "unknown key `colour`")],
    "value_as_text.yaml": [(9, "`value` is read as string")],
    "value_without_currency.yaml": [(8, "`value` without a currency")],
    "yes_as_key.yaml": [(4, "unknown key `yes` (mapping keys are fixed")],
}

SUGGESTIONS: dict[str, str] = {
    "unknown_top_key.yaml": "— did you mean `stage_field`?",
    "unknown_rule_key.yaml": "— did you mean `event`?",
    "param_field_typo.yaml": "— did you mean `field`?",
    "bad_param_type.yaml": "— did you mean `number`?",
    "bad_event_name.yaml": "— use `closed_won`",
    "currency_lowercase.yaml": "— write `USD`",
    "event_name_capitals.yaml": "— write `purchase`",
    "missing_client_id_field.yaml": "— add `client_id_field:`",
    "many_problems.yaml": "— did you mean `client_id_field`?",
    "star_unquoted.yaml": 'to match any stage write "*" in quotes',
    "stage_is_yes.yaml": 'put the stage name in quotes, e.g. "Yes"',
}


def validate(*args: str) -> Result:
    return CliRunner().invoke(main, ["mappings", "validate", *args])


def problem_lines(output: str) -> list[re.Match[str]]:
    return [m for line in output.splitlines() if (m := PROBLEM_LINE.match(line))]


def test_corpus_is_complete() -> None:
    on_disk = sorted(p.name for p in CORPUS.iterdir())
    assert on_disk == sorted(EXPECTED)
    assert len(on_disk) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_file_reports_its_problems_and_exits_1(name: str) -> None:
    path = CORPUS / name
    result = validate(str(path))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    found = [m for m in problem_lines(result.output) if m["path"] == str(path)]
    assert len(found) == len(EXPECTED[name]), result.output
    for (line, text), match in zip(EXPECTED[name], found, strict=True):
        assert int(match["line"]) == line, match.group(0)
        assert text in match["what"], match.group(0)
    if name in SUGGESTIONS:
        assert SUGGESTIONS[name] in result.output


def test_whole_corpus_at_once_reports_every_file() -> None:
    result = validate(str(CORPUS))
    assert result.exit_code == 1
    paths = {m["path"] for m in problem_lines(result.output)}
    assert paths == {str(CORPUS / name) for name in EXPECTED}
    total = sum(len(v) for v in EXPECTED.values())
    assert f"{total} problems in {len(EXPECTED)} of {len(EXPECTED)} files" in result.output


def test_five_megabyte_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "huge.yaml"
    rule = "  - to: Closed Won\n    event: close_convert_lead\n"
    head = "object: Opportunity\nstage_field: StageName\nclient_id_field: X\nrules:\n"
    with big.open("w") as fh:
        fh.write(head)
        fh.write(rule * (5_000_000 // len(rule)))
    assert big.stat().st_size > 4_900_000
    result = validate(str(big))
    assert result.exit_code == 1
    (match,) = problem_lines(result.output)
    assert match["line"] == "1"
    assert f"the limit is {MAX_FILE_BYTES:,}" in match["what"]


def test_daemon_loader_refuses_exactly_what_validate_reports() -> None:
    from ga4sync.core.errors import MappingError

    for name, expected in EXPECTED.items():
        with pytest.raises(MappingError) as info:
            load_mapping(CORPUS / name)
        assert len(info.value.problems) == len(expected), name


def test_every_shipped_mapping_validates() -> None:
    shipped = sorted(MAPPINGS_DIR.glob("*.yaml"))
    assert {p.name for p in shipped} >= {
        "salesforce_opportunity.yaml",
        "salesforce_lead.yaml",
        "hubspot_deals.yaml",
        "hubspot_contacts.yaml",
    }
    result = validate("--offline", str(MAPPINGS_DIR))
    assert result.exit_code == 0, result.output
    assert f"all {len(shipped)} mapping files valid" in result.output
    for path in shipped:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../sync/schemas/mapping.schema.json"
        assert check_mapping(path).problems == []


def test_missing_path_and_empty_folder_are_problems(tmp_path: Path) -> None:
    result = validate(str(tmp_path / "nope.yaml"), str(tmp_path))
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope.yaml'}:1:1: file not found" in result.output
    assert f"{tmp_path}:1:1: no .yaml mapping files in this folder" in result.output


def test_default_is_the_mappings_folder_without_a_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mappings").mkdir()
    good = (MAPPINGS_DIR / "salesforce_lead.yaml").read_text()
    (tmp_path / "mappings" / "lead.yaml").write_text(good)
    (tmp_path / "mappings" / "bad.yaml").write_text((CORPUS / "reserved_event.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GA4SYNC_CONFIG", raising=False)
    result = validate()
    assert result.exit_code == 1
    assert "ok mappings/lead.yaml: 6 rules, Lead.Status" in result.output
    assert "mappings/bad.yaml:6:5: rule 1, event: event name `session_start`" in result.output
    # Said once, with how to get the CRM check: a stage typo here would never fire.
    note = "note: stage and field names were not checked against the CRM"
    assert result.output.count(note) == 1
    assert "`ga4sync --config PATH/TO/ga4sync.yaml mappings validate`" in result.output
    offline = validate("--offline", "mappings")
    assert offline.output.count(f"{note} (--offline)") == 1


def test_utf8_bom_and_ga_cookie_mapping_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (MAPPINGS_DIR / "hubspot_deals.yaml").read_bytes())
    assert check_mapping(path).problems == []


def test_explicit_paths_are_checked_even_when_the_config_is_broken(tmp_path: Path) -> None:
    config = tmp_path / "ga4sync.yaml"
    config.write_text("ga4: [\n")
    path = str(MAPPINGS_DIR / "salesforce_lead.yaml")
    result = CliRunner().invoke(main, ["--config", str(config), "mappings", "validate", path])
    assert result.exit_code == 0, result.output
    assert "note: config" in result.output and "field names are not checked" in result.output
    without_paths = CliRunner().invoke(main, ["--config", str(config), "mappings", "validate"])
    assert without_paths.exit_code == 2
    assert f"error: {config}:" in without_paths.output


def test_yaml_indentation_messages_are_in_plain_words_at_their_line(tmp_path: Path) -> None:
    """PyYAML's "expected <block end>" becomes what to fix; its own words stay in brackets."""
    path = tmp_path / "m.yaml"
    path.write_text(
        "object: Opportunity\nstage_field: StageName\nclient_id_field: X\nrules:\n"
        "  - to: Won\n    event: purchase\n   params: {}\n"
    )
    result = validate(str(path))
    assert result.exit_code == 1
    (match,) = problem_lines(result.output)
    assert (match["path"], match["line"], match["col"]) == (str(path), "7", "4")
    assert match["what"].startswith(
        "not valid YAML: this line is indented differently from the block it belongs to "
        "(YAML parser: expected <block end>"
    )
    assert "indent it with exactly as many spaces as the lines above it" in match["what"]
