"""HubSpot CRM v3 over HTTP: search, batch read with history, lists, pipelines, properties.

The real `hubspot-api-client` talks to this unchanged (crm-apis.md §4, §5, §7): HubSpot's error
bodies (`status`, `message`, `correlationId`, `category`), the 10,000-result search cap (400 when
`after` reaches it, while `paging.next` still points there, as HubSpot does), and 429s from
token buckets: search per second (no rate-limit headers, `policyName: SECONDLY`), everything
else per rolling window with `X-HubSpot-RateLimit-*` headers (`TEN_SECONDLY_ROLLING`), and an
optional daily quota (`DAILY`). Windows are configurable so tests never wait 10 seconds.
Every answer carries a `Date` header from the injected clock (ga4sync bounds its searches by
HubSpot's own time), OAuth tokens expire by that clock (`hubspot_auth.py`), and a test can have
the next matching call answered with a response recorded from the real HubSpot (`replay`).
"""

from __future__ import annotations

import bisect
import collections
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from ga4sync.sandbox.http import App, Request, Response, SandboxServer
from ga4sync.sandbox.hubspot_auth import OAuthApp, TokenIssuer
from ga4sync.sandbox.hubspot_data import (
    DEFAULT_SEARCH_PROPERTIES,
    HsRecord,
    HubspotData,
    hs_time,
    modified_property,
)
from ga4sync.sandbox.hubspot_query import QueryError, parse_filter_groups, parse_sorts, run_search
from ga4sync.sandbox.hubspot_wire import (
    hs_error,
    pipeline_json,
    property_json,
    rate_limited,
    record_json,
    search_json,
)

SEARCH_CAP = 10_000
SECONDLY_MESSAGE = "You have reached your secondly limit."


@dataclass(frozen=True)
class RecordedAnswer:
    """A response captured from the real HubSpot, served byte for byte."""

    path_suffix: str
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class RateLimits:
    """HubSpot's limits (Professional private app by default); tests shrink the windows."""

    search_per_window: int = 5
    search_window: float = 1.0
    burst: int = 190
    burst_window: float = 10.0
    daily: int = 650_000


class RollingWindow:
    """Requests in the last `window` seconds; refuses above `limit` (HubSpot's rolling limit)."""

    def __init__(self) -> None:
        self.times: collections.deque[float] = collections.deque()

    def take(self, limit: int, window: float, now: float) -> int | None:
        """Remaining after this request, or None when the request is over the limit."""
        while self.times and self.times[0] <= now - window:
            self.times.popleft()
        if len(self.times) >= limit:
            return None
        self.times.append(now)
        return limit - len(self.times)


class HubspotSandbox:
    """The API state of the fake account: tokens, limits, counters, search cache."""

    def __init__(
        self,
        data: HubspotData | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        limits: RateLimits | None = None,
        tokens: set[str] | None = None,
        oauth: OAuthApp | None = None,
    ) -> None:
        self.data = data or HubspotData()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits or RateLimits()
        self.tokens = tokens or {"sandbox-hubspot-token"}
        self.oauth = TokenIssuer(oauth)
        self.recorded: list[RecordedAnswer] = []
        self.search_cap = SEARCH_CAP
        """HubSpot's 10,000; tests lower it to exercise window splits with few records."""
        self.lock = threading.Lock()
        self._search_window = RollingWindow()
        self._burst_window = RollingWindow()
        self.daily_used = 0
        self.storm_left = 0
        self.storm_policy = "TEN_SECONDLY_ROLLING"
        self.counts: collections.Counter[str] = collections.Counter()
        """Requests per kind (`search`, `batch_read`, `list`, ...) and `429:<policy>`."""
        self._cache: dict[str, list[str]] = {}
        self._cache_version = -1
        self.app = self._build_app()

    def serve(self, port: int = 0) -> SandboxServer:
        """Start serving on 127.0.0.1 (plain HTTP, which the SDK accepts for `host`)."""
        return SandboxServer(self.app, port=port).start()

    # -- controls used by tests and benches ------------------------------------------------
    def storm(self, requests: int, policy: str = "TEN_SECONDLY_ROLLING") -> None:
        """The next `requests` API calls get 429 with this policy, whatever the buckets say."""
        with self.lock:
            self.storm_left, self.storm_policy = requests, policy

    def replay(self, answer: RecordedAnswer) -> None:
        """The next authorised call whose path ends with `answer.path_suffix` gets this answer."""
        with self.lock:
            self.recorded.append(answer)

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()

    # -- rate limiting ---------------------------------------------------------------------
    def _admit(self, req: Request) -> Response | None:
        if not req.path.startswith("/crm/"):
            return None
        auth = req.header("authorization") or ""
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        expired = self.oauth.refusal(token, self.clock())
        if expired is not None:
            self.counts["401:expired"] += 1
            return expired
        if token not in self.tokens and not self.oauth.knows(token):
            return hs_error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        search = req.method == "POST" and req.path.endswith("/search")
        limits = self.limits
        with self.lock:
            self.counts["requests"] += 1
            for i, answer in enumerate(self.recorded):
                if req.path.endswith(answer.path_suffix):
                    del self.recorded[i]
                    return Response(answer.status, answer.body, dict(answer.headers))
            if self.storm_left > 0:
                self.storm_left -= 1
                return self._refused(self.storm_policy, search)
            if self.daily_used >= limits.daily:
                return self._refused("DAILY", search)
            now = time.monotonic()
            if search:
                if (
                    self._search_window.take(limits.search_per_window, limits.search_window, now)
                    is None
                ):
                    return self._refused("SECONDLY", True)
            else:
                remaining = self._burst_window.take(limits.burst, limits.burst_window, now)
                if remaining is None:
                    return self._refused("TEN_SECONDLY_ROLLING", False)
                req.headers["x-sandbox-remaining"] = str(remaining)
            self.daily_used += 1
        return None

    def _refused(self, policy: str, search: bool) -> Response:
        self.counts[f"429:{policy}"] += 1
        if policy == "DAILY":
            return rate_limited("DAILY", "You have reached your daily limit.", self._headers(0))
        if search or policy == "SECONDLY":
            return rate_limited("SECONDLY", SECONDLY_MESSAGE)
        return rate_limited(
            "TEN_SECONDLY_ROLLING",
            "You have reached your ten_secondly_rolling limit.",
            self._headers(0),
        )

    def _headers(self, remaining: int) -> dict[str, str]:
        limits = self.limits
        return {
            "X-HubSpot-RateLimit-Max": str(limits.burst),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(limits.burst_window * 1000)),
            "X-HubSpot-RateLimit-Daily": str(limits.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, limits.daily - self.daily_used)),
        }

    def _after(self, req: Request, resp: Response) -> None:
        resp.headers.setdefault("Date", format_datetime(self.clock().astimezone(UTC), usegmt=True))
        remaining = req.headers.get("x-sandbox-remaining")
        if remaining is not None and req.path.startswith("/crm/"):
            resp.headers.update(self._headers(int(remaining)))

    # -- wire --------------------------------------------------------------------------------
    def _build_app(self) -> App:
        app = App()
        app.before.append(self._admit)
        app.after.append(self._after)
        obj = r"/crm/v3/objects/(?P<obj>[A-Za-z0-9_-]+)"

        @app.route("POST", r"/oauth/v1/token")
        def token(req: Request) -> Response:
            self.counts["oauth_token"] += 1
            return self.oauth.token_endpoint(req, self.clock())

        @app.route("POST", obj + r"/search")
        def search(req: Request) -> Response:
            return self._search(req, req.params["obj"])

        @app.route("POST", obj + r"/batch/read")
        def batch_read(req: Request) -> Response:
            return self._batch_read(req, req.params["obj"])

        @app.route("GET", obj)
        def get_page(req: Request) -> Response:
            return self._get_page(req, req.params["obj"])

        @app.route("GET", obj + r"/(?P<rid>[^/]+)")
        def get_by_id(req: Request) -> Response:
            self.counts["get"] += 1
            record = self.data.get(req.params["obj"], req.params["rid"])
            archived = _flag(req.arg("archived"))
            if record is None or record.archived != archived:
                return hs_error(
                    404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric."
                )
            return Response.json(
                record_json(
                    record, req.query.get("properties"), req.query.get("propertiesWithHistory")
                )
            )

        @app.route("GET", r"/crm/v3/pipelines/(?P<obj>[A-Za-z0-9_-]+)")
        def pipelines(req: Request) -> Response:
            self.counts["pipelines"] += 1
            return Response.json(
                {"results": [pipeline_json(p) for p in self._pipelines(req.params["obj"])]}
            )

        @app.route("GET", r"/crm/v3/pipelines/(?P<obj>[A-Za-z0-9_-]+)/(?P<pid>[^/]+)")
        def pipeline(req: Request) -> Response:
            self.counts["pipelines"] += 1
            for p in self._pipelines(req.params["obj"]):
                if p.id == req.params["pid"]:
                    return Response.json(pipeline_json(p))
            return hs_error(404, "OBJECT_NOT_FOUND", f"Pipeline {req.params['pid']} not found")

        @app.route("GET", r"/crm/v3/properties/(?P<obj>[A-Za-z0-9_-]+)")
        def properties(req: Request) -> Response:
            self.counts["properties"] += 1
            defs = self.data.property_defs(req.params["obj"])
            return Response.json({"results": [property_json(p) for p in defs]})

        @app.route("GET", r"/crm/v3/properties/(?P<obj>[A-Za-z0-9_-]+)/(?P<name>[^/]+)")
        def property_by_name(req: Request) -> Response:
            self.counts["properties"] += 1
            for p in self.data.property_defs(req.params["obj"]):
                if p.name == req.params["name"]:
                    return Response.json(property_json(p))
            return hs_error(
                404, "OBJECT_NOT_FOUND", f"property {req.params['name']} does not exist"
            )

        return app

    def _pipelines(self, object_type: str) -> list[Any]:
        with self.data.lock:
            return list(self.data.pipelines.get(object_type, []))

    # -- search ------------------------------------------------------------------------------
    def _search(self, req: Request, object_type: str) -> Response:
        self.counts["search"] += 1
        try:
            body = req.json() or {}
        except json.JSONDecodeError:
            return hs_error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1")
        limit = int(body.get("limit") or 10)
        if limit > 200:
            return hs_error(400, "VALIDATION_ERROR", f"limit must be at most 200, was {limit}")
        try:
            after = int(body.get("after") or 0)
        except ValueError:
            return hs_error(400, "VALIDATION_ERROR", "after must be a numeric offset")
        if after >= self.search_cap:
            return hs_error(
                400,
                "VALIDATION_ERROR",
                "There was a problem with the request.",
                errors=[{"message": f"after must be less than {self.search_cap}"}],
            )
        try:
            groups = parse_filter_groups(body.get("filterGroups"))
            sorts = parse_sorts(body.get("sorts"))
        except QueryError as exc:
            return hs_error(400, "VALIDATION_ERROR", str(exc))
        now = self.clock()
        key = json.dumps(
            [object_type, body.get("filterGroups"), body.get("sorts"), now.isoformat()],
            sort_keys=True,
            default=str,
        )
        with self.data.lock:
            if self._cache_version != self.data.version:
                self._cache, self._cache_version = {}, self.data.version
            ids = self._cache.get(key)
            if ids is None:
                try:
                    ids = run_search(self.data, object_type, groups, sorts, now)
                except QueryError as exc:
                    return hs_error(400, "VALIDATION_ERROR", str(exc))
                if len(self._cache) > 64:
                    self._cache.clear()
                self._cache[key] = ids
            table = self.data.objects.get(object_type, {})
            wanted = body.get("properties") or DEFAULT_SEARCH_PROPERTIES.get(
                object_type, ["hs_object_id", "createdate", modified_property(object_type)]
            )
            page = ids[after : after + limit]
            results = [search_json(table[rid], wanted) for rid in page]
        out: dict[str, Any] = {"total": len(ids), "results": results}
        if after + limit < len(ids):
            nxt = str(after + limit)
            out["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
        return Response.json(out)

    # -- reads by id ---------------------------------------------------------------------------
    def _batch_read(self, req: Request, object_type: str) -> Response:
        self.counts["batch_read"] += 1
        started = hs_time(datetime.now(UTC))
        body = req.json() or {}
        inputs = body.get("inputs") or []
        if len(inputs) > 100:
            return hs_error(
                400, "VALIDATION_ERROR", f"Batch input size {len(inputs)} exceeds the limit of 100"
            )
        if body.get("idProperty") not in (None, "", "hs_object_id"):
            return hs_error(400, "VALIDATION_ERROR", "only hs_object_id is supported as idProperty")
        archived = _flag(req.arg("archived"))
        results, missing = [], []
        for item in inputs:
            rid = str((item or {}).get("id", ""))
            record = self.data.get(object_type, rid)
            if record is None or record.archived != archived:
                missing.append(rid)
                continue
            results.append(
                record_json(record, body.get("properties"), body.get("propertiesWithHistory"))
            )
        out: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": hs_time(datetime.now(UTC)),
        }
        if not missing:
            return Response.json(out)
        out["numErrors"] = 1
        out["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": f"Could not get some {object_type.upper()} objects, they may be "
                "deleted or not exist. Check that ids are valid.",
                "context": {"ids": missing},
            }
        ]
        return Response.json(out, 207)

    def _get_page(self, req: Request, object_type: str) -> Response:
        self.counts["list"] += 1
        with_history = req.query.get("propertiesWithHistory")
        limit = int(req.arg("limit") or 10)
        cap = 50 if with_history else 100
        if limit > cap:
            return hs_error(
                400,
                "VALIDATION_ERROR",
                f"limit must be at most {cap}"
                + (" with propertiesWithHistory" if with_history else ""),
            )
        after = int(req.arg("after") or 0)
        archived = _flag(req.arg("archived"))
        with self.data.lock:
            table = self.data.objects.get(object_type, {})
            index = self.data.by_id(object_type)
            page: list[HsRecord] = []
            for _, rid in index[bisect.bisect_right(index, (after, "~")) :]:
                if table[rid].archived == archived:
                    page.append(table[rid])
                    if len(page) > limit:
                        break
            results = [
                record_json(r, req.query.get("properties"), with_history) for r in page[:limit]
            ]
        out: dict[str, Any] = {"results": results}
        if len(page) > limit:
            nxt = page[limit - 1].id
            out["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
        return Response.json(out)


def _flag(value: str | None) -> bool:
    """The SDK sends `archived=False` (Python's str of a bool); HubSpot reads it either way."""
    return (value or "").strip().lower() == "true"
