"""Bad settings are refused when the config loads, with one line naming the file, line and field,
and no message about a secret field repeats what was written there (issue 13).

A secret pasted where `{env: NAME}` belongs ends up in terminals, CI logs and `runs.error`
otherwise; a URL without a host or a zero timeout only shows up later as a traceback (with the
secret in it) or as rows marked `unknown`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.errors import ConfigError
from ga4sync.core.secrets import SECRET_FILE_MAX_BYTES, SecretRef
from ga4sync.pipeline.config import Config, load_config

MARKER = "Mk7-pasted/Secret=Zq4"
"""Stands for a real secret typed into the config; no output may contain any part of it."""
MARKER_PARTS = ("Mk7", "pasted", "Secret=Zq4", "Zq4")


def base_config() -> dict[str, Any]:
    return {
        "ga4": {"measurement_id": "G-ABC123", "api_secret": {"env": "GA4SYNC_API_SECRET"}},
        "state": {"url": "sqlite:///state.db"},
        "connectors": [{"name": "pos", "type": "csv", "mapping": "pos.yaml", "path": "in/*.csv"}],
    }


def salesforce(auth: object, **options: object) -> dict[str, Any]:
    return {
        "name": "sf",
        "type": "salesforce",
        "mapping": "sf.yaml",
        "instance_url": "https://acme.my.salesforce.com",
        "auth": auth,
        **options,
    }


def hubspot(**options: object) -> dict[str, Any]:
    return {
        "name": "hs",
        "type": "hubspot",
        "mapping": "hs.yaml",
        "access_token": {"env": "HUBSPOT_TOKEN"},
        **options,
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "ga4sync.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of `path` containing `text`."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def refusal(path: Path) -> str:
    """What `ga4sync status` prints for this config; it must refuse it with exit code 2."""
    result = CliRunner().invoke(main, ["--config", str(path), "status"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.output


def assert_no_marker(text: str) -> None:
    for part in MARKER_PARTS:
        assert part not in text, f"part of the pasted secret ({part!r}) was printed:\n{text}"


# -- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://", "has no host name"),
        ("https:///mp/collect", "has no host name"),
        ("https://:8443", "has no host name"),
        ("https://ga4.example.com:99999", "is not a URL ga4sync can use: its host or port"),
        ("https://user:pw@ga4.example.com", "must not hold a user name or password"),
        ("https://ga4.example.com?api_secret=x", "a base URL has no `?query` or `#fragment`"),
        ("https://ga4 .example.com", "a URL has no spaces or control characters"),
        ("ftp://ga4.example.com", "endpoint must be `global`, `eu`, or a URL"),
    ],
)
def test_a_ga4_endpoint_without_a_usable_host_is_refused_at_its_line(
    tmp_path: Path, endpoint: str, message: str
) -> None:
    doc = base_config()
    doc["ga4"]["endpoint"] = endpoint
    path = write(tmp_path, doc)
    output = refusal(path)
    assert f"{path}:{line_of(path, 'endpoint:')}:3: ga4.endpoint: {message}" in output


@pytest.mark.parametrize(
    "endpoint",
    [
        "global",
        "EU",
        "https://sgtm.example.com/mp/collect",
        "http://127.0.0.1:8080",
        "https://x.y/",
    ],
)
def test_usable_ga4_endpoints_still_load(tmp_path: Path, endpoint: str) -> None:
    doc = base_config()
    doc["ga4"]["endpoint"] = endpoint
    assert load_config(write(tmp_path, doc)).ga4.endpoint == endpoint


@pytest.mark.parametrize(
    ("connector", "field"),
    [
        (hubspot(host="http://"), "connectors[0].host"),
        (
            salesforce({"session_id": {"env": "SF_SESSION"}}, instance_url="https://"),
            "instance_url",
        ),
        (
            salesforce(
                {"method": "password", "username": "u", "password": {"env": "SF_PW"}},
                login_url="https://:443/login",
            ),
            "connectors[0].login_url",
        ),
    ],
)
def test_crm_base_urls_without_a_host_are_refused(
    tmp_path: Path, connector: dict[str, Any], field: str
) -> None:
    doc = base_config()
    doc["connectors"] = [connector]
    output = refusal(write(tmp_path, doc))
    assert field in output and "has no host name" in output


# -- secret fields: never echoed ------------------------------------------------------------

SECRET_FIELDS: list[tuple[str, Any]] = [
    ("ga4.api_secret", lambda doc, v: doc["ga4"].__setitem__("api_secret", v)),
    (
        "connectors[0].access_token",
        lambda doc, v: doc.__setitem__("connectors", [hubspot(access_token=v)]),
    ),
    (
        "connectors[0].auth.session_id",
        lambda doc, v: doc.__setitem__("connectors", [salesforce({"session_id": v})]),
    ),
    (
        "connectors[0].auth.password",
        lambda doc, v: doc.__setitem__(
            "connectors",
            [salesforce({"method": "password", "username": "u", "password": v})],
        ),
    ),
    (
        "connectors[0].auth.security_token",
        lambda doc, v: doc.__setitem__(
            "connectors",
            [
                salesforce(
                    {
                        "method": "password",
                        "username": "u",
                        "password": {"env": "SF_PW"},
                        "security_token": v,
                    }
                )
            ],
        ),
    ),
    (
        "connectors[0].auth.private_key",
        lambda doc, v: doc.__setitem__(
            "connectors",
            [
                salesforce(
                    {
                        "method": "jwt",
                        "username": "u",
                        "consumer_key": {"env": "SF_KEY"},
                        "private_key": v,
                    }
                )
            ],
        ),
    ),
    (
        "connectors[0].auth.consumer_secret",
        lambda doc, v: doc.__setitem__(
            "connectors",
            [
                salesforce(
                    {
                        "method": "client_credentials",
                        "consumer_key": {"env": "SF_KEY"},
                        "consumer_secret": v,
                    }
                )
            ],
        ),
    ),
]

WRONG_SHAPES: list[tuple[object, str]] = [
    (MARKER, "expected where the secret lives, got text"),
    (12345678, "expected where the secret lives, got a number"),
    ({"env": MARKER}, "`env:` takes the name of an environment variable"),
    ({"env": 12345678}, "`env:` takes text, got a number"),
    ({MARKER: "x"}, "this block may only hold `env:` or `file:`"),
    ({"env": "A_B", "file": MARKER}, "give exactly one of `env:` or `file:`"),
]


@pytest.mark.parametrize(("field", "put"), SECRET_FIELDS, ids=[f for f, _ in SECRET_FIELDS])
@pytest.mark.parametrize(("value", "message"), WRONG_SHAPES, ids=[m for _, m in WRONG_SHAPES])
def test_a_secret_field_written_wrong_is_refused_without_repeating_it(
    tmp_path: Path, field: str, put: Any, value: object, message: str
) -> None:
    doc = base_config()
    put(doc, value)
    path = write(tmp_path, doc)
    output = refusal(path)
    assert f"{path}:" in output and f"{field}: {message}" in output
    assert "12345678" not in output
    assert_no_marker(output)


def test_salesforce_auth_holding_text_is_refused_without_repeating_it(tmp_path: Path) -> None:
    for auth in (MARKER, {"method": MARKER}):
        doc = base_config()
        doc["connectors"] = [salesforce(auth)]
        output = refusal(write(tmp_path, doc))
        assert "connectors[0].auth" in output and "not shown because it may be a secret" in output
        assert_no_marker(output)


# -- secret references: resolved without echoing a mistake ----------------------------------


def ga4_secret(tmp_path: Path, ref: dict[str, str]) -> tuple[Config, Path]:
    doc = base_config()
    doc["ga4"]["api_secret"] = ref
    path = write(tmp_path, doc)
    return load_config(path), path


def resolve_error(config: Config) -> str:
    with pytest.raises(ConfigError) as caught:
        config.ga4.api_secret.resolve(config.base_dir)
    return str(caught.value)


def test_a_missing_conventional_env_var_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GA4SYNC_API_SECRET", raising=False)
    config, path = ga4_secret(tmp_path, {"env": "GA4SYNC_API_SECRET"})
    message = resolve_error(config)
    assert "environment variable GA4SYNC_API_SECRET" in message
    assert f"{path}:{line_of(path, 'api_secret:')}:3, ga4.api_secret" in message


def test_an_env_name_that_may_be_a_secret_is_pointed_at_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pasted = "zQ4kLm9PastedToken"  # a valid variable name, but not a conventional one
    monkeypatch.delenv(pasted, raising=False)
    config, path = ga4_secret(tmp_path, {"env": pasted})
    message = resolve_error(config)
    assert pasted not in message and "zQ4" not in message
    assert f"environment variable named at {path}:" in message and "is not set" in message


def test_a_secret_file_path_that_names_nothing_is_not_repeated(tmp_path: Path) -> None:
    config, path = ga4_secret(tmp_path, {"file": MARKER})
    message = resolve_error(config)
    assert_no_marker(message)
    assert f"secret file named at {path}:{line_of(path, 'api_secret:')}:3" in message
    assert f"relative to {tmp_path}" in message and "does not exist" in message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a folder, not a regular file"),
        (lambda p: os.mkfifo(p), "is a named pipe (FIFO), not a regular file"),
        (
            lambda p: p.write_bytes(b"k" * (SECRET_FILE_MAX_BYTES + 1)),
            "is bigger than 16 KB, the most a secret file may hold",
        ),
        (lambda p: p.write_bytes(b"\xff\xfe\x00"), "is not UTF-8 text"),
        (lambda p: p.write_text(" \n"), "is empty"),
    ],
    ids=["folder", "fifo", "too-big", "binary", "empty"],
)
def test_secret_files_must_be_small_regular_text_files(
    tmp_path: Path, make: Any, message: str
) -> None:
    target = tmp_path / "secret"
    make(target)
    config, _ = ga4_secret(tmp_path, {"file": "secret"})
    assert f"secret file {target} {message}" in resolve_error(config)


def test_dev_zero_as_a_secret_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    config, _ = ga4_secret(tmp_path, {"file": "/dev/zero"})
    assert "secret file /dev/zero is a device, not a regular file" in resolve_error(config)


def test_a_secret_file_up_to_the_cap_is_read_whole(tmp_path: Path) -> None:
    key = "-----BEGIN PRIVATE KEY-----\n" + "A" * (SECRET_FILE_MAX_BYTES - 60) + "\n-----END"
    (tmp_path / "sf.pem").write_text(key + "\n")
    config, _ = ga4_secret(tmp_path, {"file": "sf.pem"})
    assert config.ga4.api_secret.resolve(config.base_dir).get_secret_value() == key


def test_a_secret_ref_built_in_code_accepts_the_usual_shapes() -> None:
    assert SecretRef(env="HUBSPOT_TOKEN").env == "HUBSPOT_TOKEN"
    assert SecretRef.model_validate({"file": "keys/sf.pem"}).file == "keys/sf.pem"


# -- timeouts, leases, durations, backfill dates --------------------------------------------


@pytest.mark.parametrize(
    ("ga4", "message"),
    [
        ({"read_timeout": "0s"}, "ga4.read_timeout: must be at least 100ms"),
        ({"connect_timeout": "0ms"}, "ga4.connect_timeout: must be at least 100ms"),
        (
            {"read_timeout": "15s", "connect_timeout": "5s", "lease": "20s"},
            "ga4.lease: lease (20s) must be longer than connect_timeout + read_timeout (20s)",
        ),
        (
            {"read_timeout": "10m"},  # the default lease, 5m, is checked too
            "ga4.lease: lease (300s) must be longer than connect_timeout + read_timeout (605s)",
        ),
        (
            {"read_timeout": "1s", "connect_timeout": "0.5s", "lease": "1s"},
            "lease (1s) must be longer than connect_timeout + read_timeout (1.5s)",
        ),
    ],
)
def test_timeouts_and_a_lease_that_cannot_work_are_refused(
    tmp_path: Path, ga4: dict[str, str], message: str
) -> None:
    doc = base_config()
    doc["ga4"].update(ga4)
    assert message in refusal(write(tmp_path, doc))


def test_a_lease_longer_than_a_request_loads(tmp_path: Path) -> None:
    doc = base_config()
    doc["ga4"].update({"read_timeout": "1s", "connect_timeout": "0.5s", "lease": "2s"})
    assert load_config(write(tmp_path, doc)).ga4.lease.total_seconds() == 2


@pytest.mark.parametrize(
    "connector",
    [salesforce({"session_id": {"env": "SF_SESSION"}}, timeout="0s"), hubspot(timeout="0s")],
    ids=["salesforce", "hubspot"],
)
def test_a_crm_timeout_of_zero_is_refused(tmp_path: Path, connector: dict[str, Any]) -> None:
    doc = base_config()
    doc["connectors"] = [connector]
    assert "connectors[0].timeout: must be at least 1s" in refusal(write(tmp_path, doc))


@pytest.mark.parametrize("lookback", ["99999999999d", "3651d", 10**20])
def test_an_initial_lookback_beyond_ten_years_is_refused_at_its_line(
    tmp_path: Path, lookback: object
) -> None:
    doc = base_config()
    doc["connectors"][0]["initial_lookback"] = lookback
    path = write(tmp_path, doc)
    output = refusal(path)
    assert f"{path}:{line_of(path, 'initial_lookback:')}:" in output
    assert "is longer than 3650d (ten years)" in output


def test_a_backfill_from_year_one_to_9999_is_refused_with_the_range(tmp_path: Path) -> None:
    path = write(tmp_path, base_config())
    result = CliRunner().invoke(
        main,
        ["--config", str(path), "backfill", "--connector", "pos"]
        + ["--from", "0001-01-01", "--to", "9999-12-31"],
    )
    assert result.exit_code == 2, result.output
    assert "--from `0001-01-01` is outside the dates a backfill can cover, 2000-01-01 to " in (
        result.output
    )
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        main,
        ["--config", str(path), "backfill", "--connector", "pos"]
        + ["--from", "2026-01-01", "--to", "9999-12-31T23:00:00-05:00"],
    )
    assert result.exit_code == 2 and "--to `9999-12-31T23:00:00-05:00` is outside" in (
        result.output
    )


def test_a_path_key_at_the_top_is_an_unknown_key_not_a_silent_override(tmp_path: Path) -> None:
    """`path` is where ga4sync read the config from, not a setting: a `path:` key typed at the
    top (meant for a CSV connector) is refused like any other unknown key, and relative paths
    still resolve beside the file that was read."""
    doc = base_config()
    doc["path"] = "/elsewhere"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, doc))
    assert "unknown key `path`" in err.value.problems[0]
    assert err.value.problems[0].startswith(f"{tmp_path / 'ga4sync.yaml'}:")
    config = load_config(write(tmp_path, base_config()))
    assert config.path == (tmp_path / "ga4sync.yaml").resolve()
    assert config.resolve("pos.yaml") == tmp_path.resolve() / "pos.yaml"
    assert "path" not in config.model_dump()
