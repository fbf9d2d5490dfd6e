"""GA4 validation server answers others published (tests/contracts/ga4), replayed byte for byte.

The sandbox's /debug/mp/collect serves them over real HTTP; ga4sync's client, the
`--validate-remote` check and its message to a person read them as they are (one has no
`fieldPath` at all). Where the request that produced an answer is published too, ga4sync's own
validator must give the same first message: that is how these recordings found that ga4sync
said "client_id is required." where Google says "Measurement requires a client_id.".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from ga4sync.ga4.rules import Mode, validate_payload
from ga4sync.pipeline.ga4_client import Ga4Client
from ga4sync.pipeline.remote_check import describe_refusal
from ga4sync.sandbox.ga4 import Ga4Sandbox, RunningServer, serve_ga4
from ga4sync.sandbox.ga4_debug import RECORDINGS as SHIPPED
from ga4sync.sandbox.ga4_debug import recording_for
from ga4sync.state.store import ClaimedRow

from tests.test_import_cycles import _static_checks

RECORDINGS = Path(__file__).resolve().parent / "contracts" / "ga4"
"""The published bodies with their sources; the sandbox ships copies (SHIPPED)."""

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
GOOD_EVENT = {"name": "qualify_lead", "params": {"value": 1, "currency": "USD"}}

# recording -> a request that the sandbox answers with it (published ones where there is one)
TRIGGERS: dict[str, bytes] = {
    "google_name_invalid.json": (RECORDINGS / "google_name_invalid.request.json").read_bytes(),
    "bluepsyduck_client_id_required.json": (
        RECORDINGS / "bluepsyduck_client_id_required.request.json"
    ).read_bytes(),
    "br33f_unknown_event_field.json": json.dumps(
        {"client_id": "1.2", "events": [{"names": "level_up"}]}
    ).encode(),
    "google_valid.json": json.dumps({"client_id": "1.2", "events": [GOOD_EVENT]}).encode(),
}


@pytest.fixture
def ga4_debug() -> Iterator[tuple[Ga4Sandbox, RunningServer]]:
    sandbox = Ga4Sandbox()
    server = serve_ga4(sandbox)
    try:
        yield sandbox, server
    finally:
        server.stop()


def recorded(name: str) -> bytes:
    return (RECORDINGS / name).read_bytes()


def test_every_recording_has_a_source_in_the_readme_and_a_trigger() -> None:
    readme = (RECORDINGS / "README.md").read_text()
    answers = sorted(p.name for p in RECORDINGS.glob("*.json") if ".request." not in p.name)
    assert answers == sorted(TRIGGERS)
    assert all(f"`{name}`" in readme for name in answers)


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_sandbox_answers_with_the_recording_byte_for_byte(
    ga4_debug: tuple[Ga4Sandbox, RunningServer], name: str
) -> None:
    sandbox, server = ga4_debug
    resp = requests.post(f"{server.url}/debug/mp/collect", data=TRIGGERS[name], timeout=30)
    assert resp.status_code == 200
    assert resp.content == recorded(name)
    assert sandbox.debug_recordings_used == [name]
    assert sandbox.hits == []  # the validation server never records an event


@pytest.mark.parametrize(
    "body,name",
    [
        ({"client_id": "1.2", "events": [{"name": "1st_call"}]}, "google_name_invalid.json"),
        (
            {"client_id": "1.2", "events": [{"name": "ok", "parms": {}}]},
            "br33f_unknown_event_field.json",
        ),
        ({"app_instance_id": "abc", "events": [GOOD_EVENT]}, "google_valid.json"),
        # Not recognised, answered as valid: the recordings are not ga4sync's rules.
        ({"client_id": "order-1", "events": [{"name": "session_start"}]}, "google_valid.json"),
    ],
)
def test_the_choice_of_recording_is_the_documented_rule(body: object, name: str) -> None:
    assert recording_for(json.dumps(body).encode()) == name


def test_a_body_that_is_not_json_gets_400_and_no_invented_answer(
    ga4_debug: tuple[Ga4Sandbox, RunningServer],
) -> None:
    sandbox, server = ga4_debug
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        resp = requests.post(f"{server.url}/debug/mp/collect", data=raw, timeout=30)
        assert (resp.status_code, resp.content) == (400, b"")
    assert sandbox.debug_recordings_used == []


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_client_and_remote_check_read_each_recording(
    ga4_debug: tuple[Ga4Sandbox, RunningServer], name: str
) -> None:
    _, server = ga4_debug
    client = Ga4Client(
        measurement_id="G-TEST0001", api_secret="recorded-secret", endpoint=server.url
    )
    try:
        outcome, messages = client.debug(json.loads(TRIGGERS[name]))
    finally:
        client.close()
    assert outcome.kind == "sent"
    expected = json.loads(recorded(name))["validationMessages"]
    assert messages == expected
    if not expected:
        return
    row = ClaimedRow(
        key="k1",
        connector="sf",
        event_name="close_convert_lead",
        payload={},
        group_key="g",
        changed_at=NOW,
        attempts=1,
        resend_if_unknown=False,
        claim_token="t",
        rule="won",
        mapping_hash="abcdef1234567890",
    )
    text = describe_refusal(row, messages[0])
    assert text.startswith("GA4 validation server (--validate-remote) refused mapping rule `won`")
    assert expected[0]["description"] in text
    assert expected[0]["validationCode"] in text
    assert f"at {expected[0].get('fieldPath') or '(payload)'}:" in text
    assert "recorded-secret" not in text


@pytest.mark.parametrize(
    "name", ["google_name_invalid.json", "bluepsyduck_client_id_required.json", "google_valid.json"]
)
def test_our_validator_says_what_google_said_for_the_published_request(name: str) -> None:
    """Google shows one message; ours collects all and must include Google's, word for word.

    (Google's docs request has the placeholder client_id `CLIENT_ID`, which ours also refuses
    in ENFORCE mode, first; whether Google checks names before the client_id format or the
    docs replaced a real id nobody published, so only inclusion is asserted.)
    """
    request = json.loads(TRIGGERS[name])
    behaviour = request.pop("validation_behavior", Mode.RELAXED.value)
    ours = [m.as_dict() for m in validate_payload(request, mode=Mode(behaviour), now=NOW)]
    google = json.loads(recorded(name))["validationMessages"]
    if not google:
        assert ours == []
    for message in google:
        assert message in ours


def test_our_parse_error_for_an_unknown_event_field_is_googles() -> None:
    google = json.loads(recorded("br33f_unknown_event_field.json"))["validationMessages"][0]
    request = {"client_id": "1.2", "events": [{"names": "level_up"}]}
    ours = validate_payload(request, mode=Mode.RELAXED, now=NOW)[0].as_dict()
    assert (ours["description"], ours["validationCode"]) == (
        google["description"],
        google["validationCode"],
    )
    assert ours["fieldPath"] == google.get("fieldPath", "")


def test_the_sandbox_does_not_import_ga4sync_rules(tmp_path: Path) -> None:
    """The debug answers must not come from the validator they are meant to check."""
    tree = tmp_path / "ga4sync-tree"
    _static_checks().build_tree(tree)
    code = (
        "import json, grimp\n"
        "g = grimp.build_graph('ga4sync', include_external_packages=False)\n"
        "print(json.dumps(sorted(g.find_upstream_modules('ga4sync.sandbox', as_package=True))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ, PYTHONPATH=str(tree)),
        capture_output=True,
        text=True,
        check=True,
    )
    upstream = json.loads(out.stdout)
    assert "ga4sync.core.clock" in upstream  # the graph is the real one
    assert [m for m in upstream if m.startswith(("ga4sync.ga4.", "ga4sync.mapping."))] == []


def test_the_sandbox_ships_the_recordings_byte_for_byte() -> None:
    """The installed sandbox answers from its own copies; they must be the published bodies."""
    answers = sorted(p.name for p in RECORDINGS.glob("*.json") if ".request." not in p.name)
    assert sorted(p.name for p in SHIPPED.glob("*.json")) == answers
    for name in answers:
        assert (SHIPPED / name).read_bytes() == (RECORDINGS / name).read_bytes(), name
