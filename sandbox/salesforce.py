"""Salesforce REST over HTTPS: query/queryAll/queryMore, errors and limits as Salesforce sends them.

The real `simple-salesforce` talks to this unchanged (crm-apis.md §1, §7): JSON-array error
bodies, `nextRecordsUrl` locators, `Sforce-Limit-Info` on every answer.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ga4sync.sandbox import soql
from ga4sync.sandbox.http import App, Request, Response
from ga4sync.sandbox.salesforce_access import METADATA_FIELDS, SETUP_OBJECTS
from ga4sync.sandbox.salesforce_auth import SandboxCredentials, add_login_routes
from ga4sync.sandbox.salesforce_data import SALESFORCE_ID, SalesforceData, sf_time

API_VERSION_PATH = r"/services/data/v(?P<ver>\d+\.\d)"


def sf_error(status: int, code: str, message: str) -> Response:
    return Response.json([{"message": message, "errorCode": code}], status)


def not_supported(obj: str) -> str:
    """Salesforce's INVALID_TYPE message for an object the user may not query (or that the org
    does not have: the two look the same to an API user). Marketo's "Salesforce Diagnostics"
    docs quote it for a user without access to Lead: `sObject type 'Lead' is not supported. If
    you are attempting to use a custom object, be sure to append the '__c' after the entity
    name. Please reference your WSDL or the describe call for the appropriate names`."""
    return (
        f"sObject type '{obj}' is not supported. If you are attempting to use a custom object, "
        "be sure to append the '__c' after the entity name. Please reference your WSDL or the "
        "describe call for the appropriate names."
    )


def _is_id_field(name: str) -> bool:
    """`Id` and reference fields (`OpportunityId`, `ParentId`, `OwnerId`...): Salesforce checks
    their literals are ids before it runs the query."""
    return name == "Id" or name.endswith("Id")


@dataclass
class Cursor:
    """An open query locator: the query's records, its batch size, when it was last used."""

    records: list[dict[str, Any]]
    size: int
    used_at: datetime


@dataclass
class Fault:
    """One answer given instead of the real one: a 5xx, a proxy's HTML page, a stall, or a
    body and headers recorded from real Salesforce (tests/contracts/salesforce/, replayed by
    `replay`). `after` data calls are served normally first, so a fault can hit mid-paging."""

    status: int
    body: bytes
    content_type: str
    after: int = 0
    stall: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers, e.g. a recorded `Sforce-Limit-Info`."""


SERVER_UNAVAILABLE = Fault(
    503,
    b'[{"message":"Server temporarily unavailable","errorCode":"SERVER_UNAVAILABLE"}]',
    "application/json;charset=UTF-8",
)
CONCURRENT_LONG_TXN = Fault(
    403,
    b'[{"message":"ConcurrentPerOrgLongTxn Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]',
    "application/json;charset=UTF-8",
)
"""Too many long-running requests in the org at once: clears when they finish."""
PROXY_BAD_GATEWAY = Fault(
    502,
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center></body></html>",
    "text/html",
)


class SalesforceSandbox:
    """State of the fake org's API: sessions, quota, cursors; the data lives in SalesforceData."""

    def __init__(
        self,
        data: SalesforceData | None = None,
        *,
        default_page_size: int = 2000,
        daily_limit: int = 15000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.data = data or SalesforceData()
        self.default_page_size = default_page_size
        self.daily_limit = daily_limit
        self.api_used = 0
        self.tokens: set[str] = {"sandbox-session"}
        self.clock = clock
        self.cursors: dict[str, Cursor] = {}
        """Open query locators, oldest first."""
        self.locator_idle = timedelta(minutes=15)
        """A locator unused this long (by `clock`) is gone: INVALID_QUERY_LOCATOR."""
        self.expired_locators = 0
        """queryMore calls refused with INVALID_QUERY_LOCATOR."""
        self.max_open_locators = 10
        """Open locators per user; opening one more deletes the oldest, as Salesforce does."""
        self._cursor_ids = itertools.count(1)
        self.lock = threading.Lock()
        self.requests: list[str] = []
        self.userinfo_calls = 0
        """`GET /services/oauth2/userinfo` served: the identity service, not in `requests`."""
        self.credentials = SandboxCredentials()
        self.faults: list[Fault] = []
        self.app = self._build_app()

    # -- controls used by tests and the demo -----------------------------------------------
    def expire_sessions(self) -> None:
        with self.lock:
            self.tokens.clear()

    def issue_token(self, token: str) -> None:
        with self.lock:
            self.tokens.add(token)

    def allow_calls(self, count: int) -> None:
        """Leave exactly `count` calls of today's quota; the next one is REQUEST_LIMIT_EXCEEDED."""
        with self.lock:
            self.daily_limit = self.api_used + count

    def fail(self, fault: Fault, *, after: int = 0, stall: float = 0.0) -> None:
        """The next data call after `after` good ones gets `fault` (the quota is not charged)."""
        with self.lock:
            self.faults.append(
                Fault(
                    fault.status,
                    fault.body,
                    fault.content_type,
                    after=after,
                    stall=stall,
                    headers=dict(fault.headers),
                )
            )

    def replay(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json;charset=UTF-8",
    ) -> None:
        """The next data call (after any queued before it) is answered with exactly these
        bytes and headers: a body someone recorded from real Salesforce, so the client and
        the connector meet Salesforce's shapes rather than the sandbox's own."""
        self.fail(Fault(status, body, content_type, headers=dict(headers or {})))

    def data_requests(self) -> int:
        """REST calls served (logins excluded): what counts against the org's daily limit."""
        with self.lock:
            return len(self.requests)

    # -- wire --------------------------------------------------------------------------------
    def _build_app(self) -> App:
        app = App()
        app.before.append(self._check_auth)
        add_login_routes(app, self.credentials, self.issue_token)

        @app.route("GET", API_VERSION_PATH + r"/(?P<kind>query|queryAll)/?")
        def query(req: Request) -> Response:
            q = req.arg("q")
            if not q:
                return sf_error(400, "MALFORMED_QUERY", "missing query parameter q")
            return self._query(req, q, include_deleted=req.params["kind"] == "queryAll")

        @app.route(
            "GET",
            API_VERSION_PATH + r"/(?:query|queryAll)/(?P<cursor>[A-Za-z0-9]+)-"
            r"(?P<offset>\d+)",
        )
        def query_more(req: Request) -> Response:
            return self._page(req, req.params["cursor"], int(req.params["offset"]))

        @app.route("GET", API_VERSION_PATH + r"/sobjects/(?P<obj>\w+)/describe/?")
        def describe(req: Request) -> Response:
            obj = req.params["obj"]
            names = self.data.visible_fields(obj)
            if names is None:
                return sf_error(404, "NOT_FOUND", f"The requested resource does not exist: {obj}")
            fields = [{"name": n, "picklistValues": self._picklist(obj, n)} for n in sorted(names)]
            return Response.json({"name": obj, "fields": fields}, headers=self._limit_header())

        @app.route("GET", r"/services/oauth2/userinfo")
        def userinfo(req: Request) -> Response:
            auth = req.header("authorization") or ""
            with self.lock:
                self.userinfo_calls += 1
                known = auth.startswith("Bearer ") and auth[len("Bearer ") :] in self.tokens
            if not known:
                return Response(401, b"Bad_OAuth_Token", {"Content-Type": "text/plain"})
            instance = f"https://{req.header('host') or '127.0.0.1'}"
            return Response.json(self.data.access.userinfo(instance))

        @app.route("GET", API_VERSION_PATH + r"/limits/?")
        def limits(req: Request) -> Response:
            return Response.json(
                {
                    "DailyApiRequests": {
                        "Max": self.daily_limit,
                        "Remaining": self.daily_limit - self.api_used,
                    }
                },
                headers=self._limit_header(),
            )

        return app

    def _picklist(self, obj: str, name: str) -> list[dict[str, Any]]:
        """Values the org's picklist offers: those declared, plus any stored on a record."""
        values = set(self.data.picklists.get((obj, name), ()))
        if values:
            values |= {
                str(r[name]) for r in self.data.rows(obj, True) if isinstance(r.get(name), str)
            }
        return [
            {"value": v, "label": v, "active": True, "defaultValue": False} for v in sorted(values)
        ]

    def _check_auth(self, req: Request) -> Response | None:
        if not req.path.startswith("/services/data/"):
            return None
        with self.lock:
            self.requests.append(f"{req.method} {req.path}")
            auth = req.header("authorization") or ""
            token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
            if token not in self.tokens:
                return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            fault = self._due_fault()
        if fault is not None:
            action = f"stall:{fault.stall}" if fault.stall else None
            headers = {"Content-Type": fault.content_type, **fault.headers}
            return Response(fault.status, fault.body, headers, action)
        with self.lock:
            if self.api_used >= self.daily_limit:
                return sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_used += 1
        return None

    def _due_fault(self) -> Fault | None:
        if not self.faults:
            return None
        if self.faults[0].after > 0:
            self.faults[0].after -= 1
            return None
        return self.faults.pop(0)

    def _limit_header(self) -> dict[str, str]:
        return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.daily_limit}"}

    def _page_size(self, req: Request) -> int:
        options = req.header("sforce-query-options") or ""
        for part in options.split(","):
            name, _, value = part.strip().partition("=")
            if name.lower() == "batchsize" and value.isdigit():
                return max(200, min(2000, int(value), self.default_page_size))
        return self.default_page_size

    def _query(self, req: Request, text: str, *, include_deleted: bool) -> Response:
        try:
            parsed = soql.parse(text)
        except soql.SoqlError as exc:
            return sf_error(400, exc.code, f"\n{text}\nERROR at Row:1:Column:1\n{exc}")
        metadata = METADATA_FIELDS.get(parsed.obj)
        access = self.data.access
        if parsed.obj in access.refused or (
            parsed.obj in SETUP_OBJECTS and not access.setup_readable
        ):
            return sf_error(400, "INVALID_TYPE", not_supported(parsed.obj))
        if parsed.obj == "FieldDefinition":
            known: set[str] | None = {
                "Id",
                "QualifiedApiName",
                "EntityDefinition.QualifiedApiName",
                "IsFieldHistoryTracked",
            }
        elif metadata is not None:
            known = metadata
        else:
            known = self.data.visible_fields(parsed.obj)
        if known is None:
            return sf_error(400, "INVALID_TYPE", f"sObject type '{parsed.obj}' is not supported.")
        for name in [*parsed.fields, *soql.fields_in(parsed.where), *(n for n, _ in parsed.order)]:
            if name not in known:
                return sf_error(
                    400,
                    "INVALID_FIELD",
                    f"\n{text}\n^\nERROR at Row:1:Column:1\nNo such column '{name}' "
                    f"on entity '{parsed.obj}'. If you are attempting to use a "
                    "custom field, be sure to append the '__c' after the custom "
                    "field name.",
                )
        bad_id = soql.first_literal(
            parsed.where,
            lambda name, v: (
                _is_id_field(name) and isinstance(v, str) and not SALESFORCE_ID.match(v)
            ),
        )
        if bad_id is not None:
            return sf_error(
                400,
                "INVALID_QUERY_FILTER_OPERATOR",
                f"\n{text}\n^\nERROR at Row:1:Column:1\ninvalid ID field: {bad_id}",
            )
        indexed = {"Id", self.data.indexed_field(parsed.obj) or "Id"}
        only = soql.narrowing(parsed.where, indexed)
        if parsed.obj == "FieldDefinition":
            table = self.data.field_definitions()
        elif metadata is not None:
            table = self.data.access.metadata_rows(parsed.obj, sorted(self.data.field_names))
        else:
            # Sharing: rows the integration user may not see are left out, silently.
            table = [
                r
                for r in self.data.rows(parsed.obj, include_deleted, only=only)
                if self.data.visible(parsed.obj, r)
            ]
        rows = [r for r in table if soql.matches(parsed.where, r)]
        if parsed.order:
            rows.sort(key=soql.sort_key(parsed.order))
        if parsed.limit is not None:
            rows = rows[: parsed.limit]
        records = [self._shape(parsed.obj, r, parsed.fields) for r in rows]
        size = self._page_size(req)
        with self.lock:
            cursor = f"01gSBX{next(self._cursor_ids):012d}"
            while len(self.cursors) >= self.max_open_locators:
                self.cursors.pop(next(iter(self.cursors)))
            opened = self.cursors[cursor] = Cursor(records, size, self.clock())
        return self._respond(req, cursor, opened, 0, include_deleted)

    def _page(self, req: Request, cursor: str, offset: int) -> Response:
        with self.lock:
            found = self.cursors.get(cursor)
            now = self.clock()
            if found is not None and now - found.used_at > self.locator_idle:
                del self.cursors[cursor]
                found = None
            if found is not None:
                found.used_at = now
            if found is None:
                self.expired_locators += 1
        if found is None:
            return sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        include_deleted = "/queryAll/" in req.path
        return self._respond(req, cursor, found, offset, include_deleted)

    def _respond(
        self, req: Request, cursor: str, found: Cursor, offset: int, include_deleted: bool
    ) -> Response:
        """One page; the locator keeps the batch size of its query, as Salesforce's does."""
        records, size = found.records, found.size
        page = records[offset : offset + size]
        done = offset + size >= len(records)
        body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": page}
        if done:
            with self.lock:
                self.cursors.pop(cursor, None)
        else:
            kind = "queryAll" if include_deleted else "query"
            body["nextRecordsUrl"] = (
                f"/services/data/v{req.params['ver']}/{kind}/{cursor}-{offset + size}"
            )
        return Response.json(body, headers=self._limit_header())

    @staticmethod
    def _shape(obj: str, row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attributes": {
                "type": obj,
                "url": f"/services/data/v59.0/sobjects/{obj}/{row.get('Id')}",
            }
        }
        for name in fields:
            value = row.get(name)
            if isinstance(value, datetime):
                value = sf_time(value)
            elif isinstance(value, date):
                value = value.isoformat()
            out[name] = value
        return out
