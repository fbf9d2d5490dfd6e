"""Every auth mode through the real simple-salesforce login flows, against the sandbox org.

No state store is involved: these build the connector directly, as `ga4sync mappings validate`
does, and read one window (or run validate, which describes the object).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ga4sync.cli import main
from ga4sync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from ga4sync.connectors.salesforce_auth import LoginTarget, login_domain
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import TimeWindow
from ga4sync.mapping.load import load_mapping
from ga4sync.mappings import MAPPINGS_DIR
from ga4sync.pipeline.fetch_spec import spec_of
from ga4sync.sandbox.runner import SandboxEnvironment

from tests.conftest import EngineFactory


def _secret(dir_: Path, name: str, value: str) -> dict[str, str]:
    path = dir_ / name
    path.write_text(value + "\n")
    return {"file": str(path)}


def _auth(kind: str, sandbox: SandboxEnvironment, tmp_path: Path) -> dict[str, Any]:
    creds = sandbox.salesforce.credentials
    if kind == "password":
        return {
            "method": "password",
            "username": creds.username,
            "password": _secret(tmp_path, "pw", creds.password),
            "security_token": _secret(tmp_path, "tok", creds.security_token),
        }
    if kind == "jwt":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "method": "jwt",
            "username": creds.username,
            "consumer_key": _secret(tmp_path, "ck", creds.consumer_key),
            "private_key": _secret(tmp_path, "key.pem", pem),
        }
    return {
        "method": "client_credentials",
        "consumer_key": _secret(tmp_path, "ck", creds.consumer_key),
        "consumer_secret": _secret(tmp_path, "cs", creds.consumer_secret),
    }


def _connector(sandbox: SandboxEnvironment, auth: dict[str, Any], **extra: Any) -> Any:
    settings = SalesforceSettings.model_validate(
        {
            "name": "sf",
            "mapping": "m.yaml",
            "auth": auth,
            "login_url": f"{sandbox.sf_server.url}/login",
            "ca_file": str(sandbox.ca_file),
            **extra,
        }
    )
    mapping = load_mapping(MAPPINGS_DIR / "salesforce_opportunity.yaml").model
    return SalesforceConnector(settings, spec=spec_of(mapping))


def _window_moves(connector: Any, sandbox: SandboxEnvironment) -> list[str]:
    start = sandbox.clock.now() - timedelta(hours=3)
    return [
        t.to_value
        for page in connector.fetch_transitions(TimeWindow(start=start))
        for t in page.transitions
    ]


@pytest.mark.parametrize("kind", ["password", "jwt", "client_credentials"])
def test_login_reads_and_logs_in_again_when_the_session_expires(
    kind: str, sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    oid = data.create_opportunity(now - timedelta(hours=2), stage="Prospecting")
    data.move_opportunity(oid, "Closed Won", now - timedelta(hours=1))
    connector = _connector(sandbox, _auth(kind, sandbox, tmp_path))
    try:
        assert _window_moves(connector, sandbox) == ["Prospecting", "Closed Won"]
        sandbox.salesforce.expire_sessions()
        assert _window_moves(connector, sandbox) == ["Prospecting", "Closed Won"]
    finally:
        connector.close()
    grant = "soap" if kind == "password" else kind
    assert sandbox.salesforce.credentials.logins == [grant, grant]
    assert connector.usage.extra["logins"] == "2"
    assert connector.usage.calls == sandbox.salesforce.data_requests()


def test_wrong_password_is_a_config_error_without_the_secret(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    auth = _auth("password", sandbox, tmp_path)
    auth["password"] = _secret(tmp_path, "pw2", "hunter2-wrong")
    with pytest.raises(ConfigError) as err:
        _connector(sandbox, auth)
    assert "INVALID_LOGIN" in str(err.value)
    assert "hunter2-wrong" not in str(err.value)


def test_client_credentials_needs_my_domain(tmp_path: Path, sandbox: SandboxEnvironment) -> None:
    settings = SalesforceSettings.model_validate(
        {
            "name": "sf",
            "mapping": "m.yaml",
            "auth": _auth("client_credentials", sandbox, tmp_path),
            "domain": "test",
        }
    )
    mapping = load_mapping(MAPPINGS_DIR / "salesforce_opportunity.yaml").model
    with pytest.raises(ConfigError, match="My Domain"):
        SalesforceConnector(settings, spec=spec_of(mapping))


def test_session_auth_needs_instance_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="instance_url"):
        SalesforceSettings.model_validate(
            {"name": "sf", "mapping": "m.yaml", "auth": {"session_id": {"env": "SF_SID"}}}
        )


@pytest.mark.parametrize(
    ("target", "domain"),
    [
        (LoginTarget(), "login"),
        (LoginTarget(domain="test"), "test"),
        (LoginTarget(login_url="https://acme.my.salesforce.com"), "acme.my"),
        (LoginTarget(login_url="https://127.0.0.1:8443/login/"), "127.0.0.1:8443/login"),
    ],
)
def test_login_domain(target: LoginTarget, domain: str) -> None:
    assert login_domain(target) == domain


def test_login_url_must_be_https() -> None:
    with pytest.raises(ConfigError, match="https"):
        login_domain(LoginTarget(login_url="http://acme.my.salesforce.com"))


def test_validate_knows_picklist_stages_and_the_converted_pseudo_stage(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    lead = tmp_path / "lead.yaml"
    lead.write_text(
        "object: Lead\nstage_field: Status\nhistory_object: LeadHistory\n"
        "client_id_field: GA_Client_ID__c\nrules:\n"
        "  - {to: Converted, event: close_convert_lead}\n"
        "  - {to: Qualifed, event: qualify_lead}\n"
    )
    config = sandbox.write_config(mapping=lead)
    result = CliRunner().invoke(main, ["--config", str(config), "mappings", "validate"])
    assert result.exit_code == 1, result.output
    assert "unknown stage `Qualifed`, did you mean `Qualified`?" in result.output
    assert "`Converted`" not in result.output


def test_password_auth_refused_from_api_65_names_the_oauth_flows(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    """Salesforce's SOAP login() is not available from API 65.0 (SOAP API End-of-Life Policy);
    the error says so and what to switch to, not "check the credentials"."""
    with pytest.raises(ConfigError) as err:
        _connector(sandbox, _auth("password", sandbox, tmp_path), api_version="65.0")
    text = str(err.value)
    assert "INVALID_OPERATION" in text
    assert "not available in the API version specified (65.0)" in text
    assert "Summer '27" in text and "method: jwt" in text and "client_credentials" in text
    assert "check the credentials" not in text
    assert sandbox.salesforce.credentials.logins == []
    assert sandbox.salesforce.credentials.password not in text


def test_password_auth_still_logs_in_before_65_with_a_deprecation_warning(
    sandbox: SandboxEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    connector = _connector(sandbox, _auth("password", sandbox, tmp_path), api_version="64.0")
    connector.close()
    assert sandbox.salesforce.credentials.logins == ["soap"]
    (warning,) = connector.warnings
    assert "`password` is deprecated" in warning and "Summer '27" in warning
    assert "api-eol-soap" in warning and "method: jwt" in warning
    assert any("deprecated" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize("kind", ["jwt", "client_credentials"])
def test_oauth_flows_log_in_at_api_65_without_a_warning(
    kind: str, sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    connector = _connector(sandbox, _auth(kind, sandbox, tmp_path), api_version="65.0")
    connector.close()
    assert sandbox.salesforce.credentials.logins == [kind]
    assert connector.warnings == []


def test_a_run_with_password_auth_shows_the_deprecation_in_status(
    sandbox: SandboxEnvironment, make_engine: EngineFactory, tmp_path: Path
) -> None:
    options = {
        "auth": _auth("password", sandbox, tmp_path),
        "login_url": f"{sandbox.sf_server.url}/login",
    }
    engine, config = make_engine(salesforce_options=options)
    assert engine.run_once().ok
    result = CliRunner().invoke(main, ["--config", str(config.path), "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    sf = next(c for c in json.loads(result.output)["connectors"] if c["name"] == "salesforce")
    assert any("`password` is deprecated" in w for w in sf["last_run"]["warnings"])
