"""Salesforce: stage transitions through the real `simple-salesforce`, within the org's API limits.

This module owns the client, the API budget and error translation; *what* is read lives in
`salesforce_history.py` (one reader per kind of history), credentials in `salesforce_auth.py`.
Every REST call is counted from the wire (a requests response hook), so re-logins and retried
calls are seen too; `Sforce-Limit-Info` gives the org's daily usage after each answer. When the
quota runs out (`REQUEST_LIMIT_EXCEEDED`) or would fall below `min_remaining_calls`, the run
stops with QuotaExhausted: pages already yielded are committed, the next run resumes there.
The same error code also answers a *concurrency* limit (`ConcurrentPerOrgLongTxn`,
`ConcurrentRequests`): that one clears in seconds, so the call is tried again after a pause.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import requests
from ga4sync.connectors.base import ApiUsage
from ga4sync.connectors.catalog import CrmFields, StageVocabulary
from ga4sync.connectors.errors import UnknownCrmField
from ga4sync.connectors.net_errors import unreachable_reason
from ga4sync.connectors.salesforce_auth import (
    PASSWORD_DEPRECATED,
    LoginTarget,
    PasswordAuth,
    SessionAuth,
    open_client,
)
from ga4sync.connectors.salesforce_errors import (
    OrgBusy,
    QueryLocatorExpired,
    is_concurrency_limit,
    refused_field,
    sf_code,
    sf_message,
    unknown_field_error,
    unknown_object_error,
)
from ga4sync.connectors.salesforce_history import (
    FieldHistory,
    FieldHistoryReader,
    KnownKeys,
    OpportunityHistoryReader,
    ReadSpec,
    SnapshotLookup,
)
from ga4sync.connectors.salesforce_polling import CONVERTED_STAGE, RecordPollReader
from ga4sync.connectors.salesforce_settings import SalesforceSettings
from ga4sync.connectors.salesforce_soql import soql_quote, without_select_fields
from ga4sync.connectors.salesforce_visibility import (
    CannotCheck,
    Visibility,
    check_visibility,
    visibility_warning,
)
from ga4sync.connectors.spec import FetchSpec
from ga4sync.core.errors import ConfigError, ConnectorError, QuotaExhausted
from ga4sync.core.model import TimeWindow, TransitionPage
from ga4sync.core.secrets import redact
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)

SNAPSHOT_WARNING = (
    "{obj}.{field} is read by snapshot diff (no field history): intermediate moves can be "
    "missed, as a record that moves several times between two polls is seen only at its last "
    "stage, timed by SystemModstamp; turn on "
    "field history tracking for {field} and set `detection: history` to see every move"
)


NOT_TRACKED_WARNING = (
    "{obj}.{field} has no field history tracking in this org, so {history} holds no rows for "
    "it and its stage moves are not seen{also}: turn it on in Setup > Object Manager > {obj} > "
    "Fields & Relationships > Set History Tracking > {field} (moves before that stay unseen), "
    "or set `detection: snapshot` in the mapping"
)
HISTORY_RETENTION = timedelta(days=730)
"""Salesforce keeps field history for 18 months in the org and returns it through the API for
about 24 months (Field History Tracking, "Field History Retention")."""
RETENTION_WARNING = (
    "the window starts {start:%Y-%m-%d}, more than 24 months before {end:%Y-%m-%d}: Salesforce "
    "returns {history} rows through the API for about 24 months only, so older moves are "
    "missing from this read, not absent from the CRM"
)
TRACKING_RECHECK = 24 * 3600.0
"""Seconds a FieldDefinition answer about history tracking is trusted (one call a day, not one
per poll: a daemon polling every minute would otherwise spend 1,440 calls a day on it)."""
_tracking_seen: dict[tuple[str, str, str], tuple[float, bool | None]] = {}
_visibility_seen: dict[tuple[str, str], tuple[float, Visibility]] = {}
"""Whether the integration user sees every record of an object, per org and object: asked at
most once a day (up to four calls), like history tracking."""


LOCATOR_RESTARTS = 3
"""Reads started again in a row after INVALID_QUERY_LOCATOR with no page in between."""

NOT_JSON = (
    "Salesforce answered with something other than its JSON (a proxy, firewall or maintenance "
    "page?); check instance_url and any proxy between ga4sync and Salesforce"
)


class TransitionReader(Protocol):
    def read(self, window: TimeWindow) -> Iterator[TransitionPage]: ...


def _plan_reader(connector: SalesforceConnector, fetch: FetchSpec) -> TransitionReader:
    """Which reader answers this spec (see salesforce_history's docstring)."""
    spec = connector.spec
    obj, stage = fetch.object_type, fetch.stage_field
    detection = fetch.detection
    declared = fetch.history_object
    if detection == "snapshot" or (
        detection == "auto"
        and declared is None
        and not (obj == "Opportunity" and stage == "StageName")
        and obj != "Lead"
    ):
        connector.detection = "snapshot"
        connector.warnings.append(SNAPSHOT_WARNING.format(obj=obj, field=stage))
        return RecordPollReader(
            connector, spec, None, connector.snapshot_lookup, conversions=obj == "Lead"
        )
    if obj == "Opportunity" and stage == "StageName" and declared in (None, "OpportunityHistory"):
        return OpportunityHistoryReader(connector, spec, connector.known_keys)
    history = FieldHistory.for_object(obj, declared)
    connector.field_history = history
    if obj == "Lead":
        return RecordPollReader(
            connector, spec, history, connector.snapshot_lookup, conversions=True
        )
    return FieldHistoryReader(connector, spec, history, connector.known_keys)


class SalesforceConnector:
    """Reads one object's stage moves; never touches state, mappings or GA4 itself."""

    detection: Literal["history", "snapshot", "file"] = "history"
    field_history: FieldHistory | None = None
    """The field-history object read (LeadHistory, Foo__History), None for OpportunityHistory
    and snapshot diff: the history whose tracking and retention can leave a read empty."""

    def __init__(
        self,
        settings: SalesforceSettings,
        *,
        spec: FetchSpec,
        snapshot_lookup: SnapshotLookup | None = None,
        known_keys: KnownKeys | None = None,
        secret_base_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.fetch = spec
        self.object_type = spec.object_type
        self.stage_field = spec.stage_field
        self.snapshot_lookup = snapshot_lookup
        self.known_keys = known_keys
        self.usage = ApiUsage()
        self.usage.extra.update({"logins": "0", "userinfo": "0"})
        self.warnings: list[str] = []
        self.absent_fields: set[str] = set()
        """Optional fields this org does not let us read; every query leaves them out."""
        self._field_exists: dict[tuple[str, str], bool | None] = {}
        fields = [f for f in dict.fromkeys(spec.record_fields) if f != "Id"]
        self.spec = ReadSpec(settings.name, spec.object_type, spec.stage_field, tuple(fields))
        self._session = requests.Session()
        self._session.hooks["response"].append(self._count)
        if settings.ca_file:
            # REQUESTS_CA_BUNDLE in the environment would silently override `verify`
            # (crm-apis.md §0.2), so environment settings are switched off for this session.
            self._session.verify = settings.ca_file
            self._session.trust_env = False
        if isinstance(settings.auth, PasswordAuth):
            log.warning("%s: %s", self.name, PASSWORD_DEPRECATED)
            self.warnings.append(PASSWORD_DEPRECATED)
        target = LoginTarget(
            domain=settings.domain, login_url=settings.login_url, instance_url=settings.instance_url
        )
        self.sf = open_client(
            settings.auth,
            target,
            session=self._session,
            version=settings.api_version,
            secret_base_dir=secret_base_dir,
        )
        self.reader = _plan_reader(self, spec)
        self.emitted_stages: tuple[str, ...] = (
            (CONVERTED_STAGE,) if spec.object_type == "Lead" else ()
        )
        """Stages ga4sync itself emits (not in the picklist), so `mappings validate` accepts
        a rule `to: Converted`."""

    def close(self) -> None:
        self._session.close()

    # -- what the object holds -------------------------------------------------------------
    def stage_vocabulary(self) -> StageVocabulary | None:
        """Picklist values are what Salesforce stores: mappings name them as they are."""
        return None

    def field_catalog(self) -> CrmFields:
        """`describe` of the object: its fields, and the stage picklist's values and labels."""
        obj = self.object_type
        fields = (self.sf.restful(f"sobjects/{obj}/describe") or {}).get("fields", [])
        picklist = next(
            (f.get("picklistValues") for f in fields if f.get("name") == self.stage_field),
            None,
        )
        stages = (
            frozenset(str(v[k]) for v in picklist for k in ("value", "label") if v.get(k))
            | frozenset(self.emitted_stages)
            if picklist
            else None
        )
        names = frozenset(str(f["name"]) for f in fields)
        return CrmFields(names, f"Salesforce describe of {obj}", stages)

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Every REST answer counts against the org's quota (`calls`). Logins and the OpenID
        Connect userinfo call are counted apart: they are the identity service, not the REST or
        SOAP API the daily allocation covers (docs/salesforce.md, "API calls")."""
        path = urlsplit(response.url).path
        if "/services/data/" in path:
            self.usage.calls += 1
        elif path.endswith("/oauth2/token") or "/services/Soap/" in path:
            self._count_apart("logins")
        elif path.endswith("/oauth2/userinfo"):
            self._count_apart("userinfo")

    def _count_apart(self, figure: str) -> None:
        self.usage.extra[figure] = str(int(self.usage.extra[figure]) + 1)

    # -- change detection ------------------------------------------------------------------
    def fetch_transitions(self, window: TimeWindow) -> Iterator[TransitionPage]:
        """The reader's pages; when a query cursor expires mid-run, the read starts again
        from the last page handed out (its watermark), which the engine has committed.

        The lower bound is closed, so rows at that very time are read again; the outbox's
        transition keys and the known-key check recognise them. A cursor that expires again
        before any new page arrives is tried at most `LOCATOR_RESTARTS` times."""
        self._warn_about_history(window)
        start, restarts = window.start, 0
        while True:
            try:
                for page in self.reader.read(TimeWindow(start=start, end=window.end)):
                    yield page
                    if page.watermark is not None and page.watermark > start:
                        start, restarts = page.watermark, 0
                self._warn(self._visibility_warnings())
                return
            except QueryLocatorExpired as exc:
                restarts += 1
                if restarts > LOCATOR_RESTARTS:
                    raise ConnectorError(
                        f"Salesforce query cursors kept expiring ({exc}): another integration "
                        "may hold this user's open queries (about 10 per user); the run "
                        "stopped after the last captured page and the next run resumes there"
                    ) from None
                log.warning(
                    "%s: Salesforce query cursor expired (%s); reading again from %s",
                    self.name, exc, start.isoformat(),
                )  # fmt: skip

    def setup_warnings(self) -> list[str]:
        """The stage field's history not tracked (a history read would come back empty), and
        an integration user that sharing keeps from seeing every record."""
        return [*self._tracking_warnings(), *self._visibility_warnings()]

    def _warn(self, warnings: list[str]) -> None:
        for warning in warnings:
            log.warning("%s: %s", self.name, warning)
            self.warnings.append(warning)

    def _visibility_warnings(self) -> list[str]:
        """Asked after the read (the read's own answers come first, and a run that stopped
        early says nothing): its few calls never stand between a run and its data."""
        seen = self._visibility()
        warning = None if seen is None else visibility_warning(self.object_type, seen)
        return [] if warning is None else [warning]

    def _visibility(self) -> Visibility | None:
        """The check of salesforce_visibility, at most once a day per org and object. None:
        not answered now (quota, outage, a login that failed); asked again next run."""
        key = (str(self.sf.base_url), self.object_type)
        seen = _visibility_seen.get(key)
        if seen is not None and time.monotonic() - seen[0] < TRACKING_RECHECK:
            return seen[1]
        if self._at_floor():
            return None
        try:
            answer = check_visibility(self.object_type, self._setup_query, self._user_id)
        except (ConnectorError, ConfigError, QuotaExhausted, OrgBusy) as exc:
            log.info("%s: record visibility not checked now: %s", self.name, exc)
            return None
        _visibility_seen[key] = (time.monotonic(), answer)
        return answer

    def _setup_query(self, soql: str) -> list[dict[str, Any]]:
        """One query of the visibility check: a refusal (INVALID_TYPE for a user who may not
        read setup, INSUFFICIENT_ACCESS...) is CannotCheck; quota and outages are raised as in
        any other call."""
        from simple_salesforce.exceptions import (  # lazy, as in _call_once
            SalesforceMalformedRequest,
            SalesforceRefusedRequest,
            SalesforceResourceNotFound,
        )

        timeout = self.settings.timeout.total_seconds()
        try:
            result = self.sf.query(soql, timeout=timeout)
        except (SalesforceMalformedRequest, SalesforceResourceNotFound) as exc:
            raise CannotCheck(sf_message(exc)) from None
        except SalesforceRefusedRequest as exc:
            if sf_code(exc) == "REQUEST_LIMIT_EXCEEDED":
                raise QuotaExhausted(sf_message(exc)) from None
            raise CannotCheck(sf_message(exc)) from None
        except Exception as exc:  # noqa: BLE001 - outage, expired session, not JSON: not now
            raise ConnectorError(f"{type(exc).__name__}") from None
        records = result.get("records") if isinstance(result, dict) else None
        return [r for r in records or [] if isinstance(r, dict)]

    def _user_id(self) -> str | None:
        """The integration user's id from `GET /services/oauth2/userinfo` (OpenID Connect)."""
        url = f"https://{self.sf.sf_instance}/services/oauth2/userinfo"
        try:
            answer = self._session.get(
                url, headers=self.sf.headers, timeout=self.settings.timeout.total_seconds()
            )
            body = answer.json() if answer.status_code == 200 else {}
        except (requests.RequestException, ValueError):
            return None
        user = body.get("user_id") if isinstance(body, dict) else None
        return user if isinstance(user, str) and user else None

    def _at_floor(self) -> bool:
        try:
            self._check_floor()
        except QuotaExhausted:
            return True
        return False

    def _tracking_warnings(self) -> list[str]:
        """The stage field's history not tracked: a history read would come back empty."""
        history = self.field_history
        if history is None or self._history_tracked() is not False:
            return []
        also = " (conversions still are)" if self.object_type == "Lead" else ""
        return [
            NOT_TRACKED_WARNING.format(
                obj=self.object_type,
                field=self.stage_field,
                history=history.object_name,
                also=also,
            )  # fmt: skip
        ]

    def _warn_about_history(self, window: TimeWindow) -> None:
        """Two ways a field-history read comes back empty while the CRM had moves: the stage
        field's history is not tracked, or the window reaches past what the API returns."""
        history = self.field_history
        if history is None:
            return
        self._warn(self._tracking_warnings())
        end = window.end or datetime.now(UTC)
        if end - window.start > HISTORY_RETENTION:
            warning = RETENTION_WARNING.format(
                start=window.start, end=end, history=history.object_name
            )
            log.warning("%s: %s", self.name, warning)
            self.warnings.append(warning)

    def _history_tracked(self) -> bool | None:
        """FieldDefinition.IsFieldHistoryTracked of the stage field, asked at most once a day
        per org and field. None: cannot tell (no View Setup permission), and then no warning."""
        key = (str(self.sf.base_url), self.object_type, self.stage_field)
        seen = _tracking_seen.get(key)
        if seen is not None and time.monotonic() - seen[0] < TRACKING_RECHECK:
            return seen[1]
        soql = (
            "SELECT QualifiedApiName, IsFieldHistoryTracked FROM FieldDefinition WHERE "
            f"EntityDefinition.QualifiedApiName = {soql_quote(self.object_type)} "
            f"AND QualifiedApiName = {soql_quote(self.stage_field)}"
        )
        from simple_salesforce.exceptions import SalesforceError  # lazy, as in _call_once

        tracked: bool | None
        try:
            records = self.sf.query(soql, timeout=self.settings.timeout.total_seconds())
            rows = records.get("records") or []
            value = rows[0].get("IsFieldHistoryTracked") if rows else None
            tracked = value if isinstance(value, bool) else None
        except (SalesforceError, requests.RequestException, ValueError, KeyError, TypeError):
            tracked = None
        _tracking_seen[key] = (time.monotonic(), tracked)
        return tracked

    # -- the API, with its budget ----------------------------------------------------------
    def pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of a SOQL query, following `nextRecordsUrl` exactly as Salesforce sent it."""
        headers = {"Sforce-Query-Options": f"batchSize={self.settings.page_size}"}
        timeout = self.settings.timeout.total_seconds()
        while True:
            query = without_select_fields(soql, self.absent_fields)
            try:
                result = self._call(partial(self.sf.query, query, headers=headers, timeout=timeout))
                break
            except UnknownCrmField as exc:
                if not self._leave_out(exc):
                    raise
        seen: set[str] = set()
        while True:
            yield list(result.get("records") or [])
            next_url = result.get("nextRecordsUrl")
            if result.get("done", True) or not next_url:
                return
            if next_url in seen:
                raise ConnectorError(f"Salesforce paging loops: {next_url} came back twice")
            seen.add(next_url)
            result = self._call(
                partial(self.sf.query_more, next_url, identifier_is_url=True, timeout=timeout)
            )

    def _leave_out(self, exc: UnknownCrmField) -> bool:
        """Whether the refused field is an optional one, now left out of every query.

        Left out when the org has no such field (CurrencyIsoCode in a single-currency org:
        the mapping's `currency:` applies), and also when the integration user cannot see
        it, but then with a warning: the org has values that are not being sent."""
        optional = exc.field in self.fetch.optional_fields and exc.object_type == self.object_type
        if not optional or exc.field in self.absent_fields:
            return False
        self.absent_fields.add(exc.field)
        exists = self._field_exists.get((exc.object_type, exc.field))
        where = f"{exc.object_type}.{exc.field}"
        if exists is True:
            self.warnings.append(
                f"{where} exists but the integration user cannot see it (field-level "
                "security): its optional params fall back to their defaults until the user "
                f"gets read access (Setup > Object Manager > {exc.object_type} > Fields & "
                f"Relationships > {exc.field} > Set Field-Level Security)"
            )
        else:
            log.info("%s: %s is not in this org; its optional params use their defaults",
                     self.name, where)  # fmt: skip
        return True

    def _org_has_field(self, entity: str, name: str) -> bool | None:
        """Whether the org has the field at all, hidden or not, from its FieldDefinition
        metadata (describe and queries leave hidden fields out). None: cannot tell (the user
        may lack the View Setup permission FieldDefinition needs)."""
        key = (entity, name)
        if key not in self._field_exists:
            soql = (
                "SELECT QualifiedApiName FROM FieldDefinition WHERE "
                f"EntityDefinition.QualifiedApiName = {soql_quote(entity)} "
                f"AND QualifiedApiName = {soql_quote(name)}"
            )
            from simple_salesforce.exceptions import SalesforceError  # lazy, as in _call_once

            try:
                answer = self.sf.query(soql, timeout=self.settings.timeout.total_seconds())
                found: bool | None = bool(answer.get("records"))
            except (SalesforceError, requests.RequestException, ValueError, KeyError, TypeError):
                found = None
            self._field_exists[key] = found
        return self._field_exists[key]

    def _call(self, fn: Callable[[], Any]) -> dict[str, Any]:
        """One REST call; a concurrency refusal is tried again after a pause (bounded)."""
        first = self.settings.busy_backoff.total_seconds()
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.busy_attempts),
            wait=wait_exponential(multiplier=first, min=first, max=max(first, 60.0)),
            retry=retry_if_exception_type(OrgBusy),
            before_sleep=self._log_busy,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._call_once(fn)
        except OrgBusy as exc:
            raise ConnectorError(
                f"Salesforce stayed busy after {self.settings.busy_attempts} tries ({exc}): "
                "another integration holds the org's concurrent requests; the run stopped "
                "after the last captured page and the next run resumes there"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - tenacity returns or raises

    def _log_busy(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s: Salesforce is busy (%s); trying again in %.1f s", self.name, exc, pause)

    def _call_once(self, fn: Callable[[], Any]) -> dict[str, Any]:
        from simple_salesforce.exceptions import (  # here: a CSV-only run never loads the SDK
            SalesforceAuthenticationFailed,
            SalesforceError,
            SalesforceExpiredSession,
            SalesforceMalformedRequest,
            SalesforceRefusedRequest,
        )

        self._check_floor()
        try:
            result: dict[str, Any] = fn()
        except SalesforceRefusedRequest as exc:
            if sf_code(exc) == "REQUEST_LIMIT_EXCEEDED" and is_concurrency_limit(exc):
                raise OrgBusy(sf_message(exc)) from None
            if sf_code(exc) == "REQUEST_LIMIT_EXCEEDED":
                raise QuotaExhausted(
                    f"Salesforce API limit reached ({sf_message(exc)}); the run stopped after "
                    "the last captured page and the next run resumes there"
                ) from None
            raise ConnectorError(f"Salesforce refused the request: {sf_message(exc)}") from None
        except SalesforceExpiredSession as exc:
            hint = (
                "a session id cannot be renewed; use auth method jwt or client_credentials "
                "so ga4sync can log in again"
                if isinstance(self.settings.auth, SessionAuth)
                else "logging in again did not help"
            )
            raise ConnectorError(
                f"Salesforce session expired ({sf_message(exc)}): {hint}"
            ) from None
        except SalesforceMalformedRequest as exc:
            field = refused_field(exc)
            if field is not None:
                entity, name = field
                history = entity.endswith("History")
                exists = None if history else self._org_has_field(entity, name)
                raise unknown_field_error(entity, name, exists=exists) from None
            if sf_code(exc) == "INVALID_QUERY_LOCATOR":
                raise QueryLocatorExpired(sf_message(exc)) from None
            missing = unknown_object_error(exc, self.fetch)
            if missing is not None:
                raise missing from None
            raise ConnectorError(f"Salesforce rejected a query: {sf_message(exc)}") from None
        except SalesforceAuthenticationFailed as exc:
            raise ConfigError(
                redact(f"Salesforce login failed again mid-run: {exc.code}: {exc.auth_message}")
            ) from None
        except SalesforceError as exc:
            raise ConnectorError(f"Salesforce error {exc.status}: {sf_message(exc)}") from None
        except requests.JSONDecodeError:
            raise ConnectorError(NOT_JSON) from None
        except requests.Timeout:
            raise ConnectorError(
                f"Salesforce did not answer within {self.settings.timeout.total_seconds():g} s; "
                "the run stopped after the last captured page and the next run resumes there"
            ) from None
        except requests.RequestException as exc:
            where = self.settings.instance_url or f"https://{self.sf.sf_instance}"
            raise ConnectorError(
                f"cannot reach Salesforce at {where}: {unreachable_reason(exc)}"
            ) from None
        except (KeyError, IndexError, TypeError):
            # simple-salesforce reads `body[0]["errorCode"]` of a 401 before its own checks.
            raise ConnectorError(NOT_JSON) from None
        if not isinstance(result, dict):
            raise ConnectorError(NOT_JSON)
        usage = self.sf.api_usage.get("api-usage")
        if usage is not None:
            self.usage.used, self.usage.limit = usage.used, usage.total
        return result

    def _check_floor(self) -> None:
        remaining = self.usage.remaining
        floor = self.settings.min_remaining_calls
        if floor and remaining is not None and remaining <= floor:
            raise QuotaExhausted(
                f"Salesforce API calls remaining today: {remaining}, at the floor "
                f"min_remaining_calls={floor}; the run stopped after the last captured page "
                "and the next run resumes there"
            )
