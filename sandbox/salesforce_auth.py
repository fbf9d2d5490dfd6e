"""The sandbox org's login endpoints: SOAP `login` and the OAuth 2.0 token endpoint.

simple-salesforce posts to `https://{domain}.salesforce.com/services/...`; with a `domain` like
`127.0.0.1:PORT/login` that URL lands here, so routes match on the path *suffix* (crm-apis.md
§1.1). Each login issues a fresh session token the REST side accepts, and names this server as
the instance. The JWT's signature is not checked (the sandbox has no certificate to check it
against) but its grant type, issuer and subject are.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from ga4sync.sandbox.http import App, Request, Response

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class SandboxCredentials:
    """What the fake org accepts; tests read the defaults from here."""

    username: str = "integration@example.com"
    password: str = "sandbox-password"
    security_token: str = "sandbox-token"
    consumer_key: str = "sandbox-consumer-key"
    consumer_secret: str = "sandbox-consumer-secret"
    logins: list[str] = field(default_factory=list)
    """One entry per successful login, by grant (`soap`, `jwt`, `client_credentials`)."""


def _soap_fault(code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>sf:{code}</faultcode><faultstring>{escape(message)}</faultstring>"
        f"<detail><sf:LoginFault><sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage></sf:LoginFault>"
        "</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(500, body.encode(), {"Content-Type": "text/xml;charset=UTF-8"})


SOAP_LOGIN_REFUSED_FROM = 65.0
"""Salesforce's SOAP `login()` is not available from API 65.0 on (SOAP API End-of-Life Policy,
developer.salesforce.com/docs/platform/api/guide/api-eol-soap.html) and retires for every
version in Summer '27."""


def soap_login_unavailable(version: str) -> str:
    """The refusal's message as published by someone who met it at 65.0 (forcedotcom/wsc
    issue #363: exceptionCode INVALID_OPERATION). Only code and message were published: the
    envelope around them is `_soap_fault`'s, the sandbox's reconstruction."""
    return (
        f"The SOAP Login operation is not available in the API version specified ({version}). "
        "Refer to the documentation for supported versions."
    )


def _oauth_error(error: str, description: str) -> Response:
    return Response.json({"error": error, "error_description": description}, 400)


def _xml_text(body: str, tag: str) -> str | None:
    m = re.search(rf"<(?:\w+:)?{tag}>(.*?)</(?:\w+:)?{tag}>", body, re.DOTALL)
    if m is None:
        return None
    return (
        m.group(1)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&amp;", "&")
    )


def _jwt_claims(assertion: str) -> dict[str, object] | None:
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def add_login_routes(
    app: App, creds: SandboxCredentials, issue_token: Callable[[str], None]
) -> None:
    """Register the SOAP and OAuth login routes on the Salesforce sandbox app."""
    counter = itertools.count(1)

    def new_token(kind: str) -> str:
        token = f"00DSBX!{kind}-{next(counter):06d}"
        issue_token(token)
        creds.logins.append(kind)
        return token

    def instance(req: Request) -> str:
        return f"https://{req.header('host') or '127.0.0.1'}"

    @app.route("POST", r"/.*services/Soap/u/(?P<ver>\d+\.\d)")
    def soap_login(req: Request) -> Response:
        if float(req.params["ver"]) >= SOAP_LOGIN_REFUSED_FROM:
            return _soap_fault("INVALID_OPERATION", soap_login_unavailable(req.params["ver"]))
        body = req.body.decode("utf-8", "replace")
        username = _xml_text(body, "username")
        password = _xml_text(body, "password")
        if username != creds.username or password != creds.password + creds.security_token:
            return _soap_fault(
                "INVALID_LOGIN",
                "INVALID_LOGIN: Invalid username, password, security token; or user locked out.",
            )
        token = new_token("soap")
        server = f"{instance(req)}/services/Soap/u/{req.params['ver']}/00DSBX"
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
            f"<metadataServerUrl>{server}</metadataServerUrl><passwordExpired>false"
            f"</passwordExpired><sandbox>true</sandbox><serverUrl>{server}</serverUrl>"
            f"<sessionId>{token}</sessionId><userId>005000000000001AAA</userId>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(200, xml.encode(), {"Content-Type": "text/xml;charset=UTF-8"})

    @app.route("POST", r"/.*services/oauth2/token")
    def token(req: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if grant == JWT_GRANT:
            claims = _jwt_claims(form.get("assertion", ""))
            if claims is None:
                return _oauth_error("invalid_grant", "invalid assertion")
            if claims.get("iss") != creds.consumer_key:
                return _oauth_error("invalid_client_id", "client identifier invalid")
            if claims.get("sub") != creds.username:
                return _oauth_error("invalid_grant", "user hasn't approved this consumer")
            kind = "jwt"
        elif grant == "client_credentials":
            basic = req.header("authorization") or ""
            expected = base64.b64encode(
                f"{creds.consumer_key}:{creds.consumer_secret}".encode()
            ).decode()
            if basic != f"Basic {expected}":
                return _oauth_error("invalid_client", "invalid client credentials")
            kind = "client_credentials"
        elif grant == "password":
            if (form.get("client_id"), form.get("client_secret")) != (
                creds.consumer_key,
                creds.consumer_secret,
            ) or (
                form.get("username") != creds.username
                or form.get("password")
                not in (
                    creds.password,
                    creds.password + creds.security_token,
                )
            ):
                return _oauth_error("invalid_grant", "authentication failure")
            kind = "password"
        else:
            return _oauth_error("unsupported_grant_type", f"grant type not supported: {grant}")
        return Response.json(
            {
                "access_token": new_token(kind),
                "instance_url": instance(req),
                "id": f"{instance(req)}/id/00DSBX/005000000000001AAA",
                "token_type": "Bearer",
                "issued_at": "0",
                "signature": "sandbox",
            }
        )
