"""Delivery against the GA4 sandbox over real HTTP: batching, outcomes, endpoints, remote checks.

Rows are captured straight into the state store (both backends) so each test controls exactly
what is due; the real `requests` client talks to the sandbox on 127.0.0.1.
"""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from ga4sync.cli import main
from ga4sync.core.clock import ManualClock, to_micros
from ga4sync.core.model import Ga4Event, Identity, Status
from ga4sync.ga4.limits import MAX_BODY_BYTES
from ga4sync.ga4.payload import build_batches, group_key, stored_payload
from ga4sync.pipeline.delivery import Delivery, DeliverySettings, OutcomeHook
from ga4sync.pipeline.delivery_policy import backoff
from ga4sync.pipeline.ga4_client import Ga4Client, resolve_base_url
from ga4sync.pipeline.remote_check import RemoteCheckMemo
from ga4sync.sandbox.aio_http import AsyncSandboxServer
from ga4sync.sandbox.ga4 import Faults, Ga4Sandbox, serve_ga4
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.errors import StateStoreError
from ga4sync.state.readings import OutboxEntry
from ga4sync.state.store import OutboxRow, Settlement, StateStore

SECRET = "test-ga4-secret-5f2c9a"
MEASUREMENT_ID = "G-TEST0001"


@dataclass
class Ga4Server:
    ga4: Ga4Sandbox
    url: str
    server: AsyncSandboxServer


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def ga4_server(clock: ManualClock) -> Iterator[Ga4Server]:
    ga4 = Ga4Sandbox(expected_secret=SECRET, clock=clock)
    server = serve_ga4(ga4)
    assert isinstance(server, AsyncSandboxServer)
    try:
        yield Ga4Server(ga4, server.url, server)
    finally:
        server.stop()


def make_client(url: str, *, read_timeout: float = 2.0, **kwargs: Any) -> Ga4Client:
    return Ga4Client(
        endpoint=url,
        measurement_id=MEASUREMENT_ID,
        api_secret=SECRET,
        connect_timeout=1.0,
        read_timeout=read_timeout,
        **kwargs,
    )


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def row(
    key: str,
    now: datetime,
    *,
    client_id: str | None = None,
    event: str = "generate_lead",
    params: dict[str, Any] | None = None,
    resend_if_unknown: bool = False,
    rule: str = "qualified",
    age: timedelta = timedelta(minutes=10),
) -> OutboxRow:
    """A pending outbox row whose event carries its own key in `row_key` (the dedupe key)."""
    identity = Identity(client_id=client_id or f"{abs(hash(key)) % 10**9}.1700000000")
    event_params = {"value": 10.0, "currency": "USD", "row_key": key, **(params or {})}
    payload = stored_payload(identity, Ga4Event(event, event_params, now - age))
    return OutboxRow(
        key=key,
        connector="test",
        object_type="Opportunity",
        record_id=key,
        field="StageName",
        from_value="A",
        to_value="B",
        changed_at=now - age,
        detected_by="history",
        status=Status.PENDING,
        rule=rule,
        event_name=event,
        payload=payload,
        group_key=group_key(payload),
        resend_if_unknown=resend_if_unknown,
        mapping_hash="mhash-1",
    )


def capture(store: StateStore, rows: list[OutboxRow], now: datetime) -> None:
    store.capture(connector="test", object_type="Opportunity", rows=rows, watermark=None, now=now)


def statuses(store: StateStore) -> dict[str, OutboxEntry]:
    return {r.key: r for r in store.list_outbox()}


def delivery(store: StateStore, client: Ga4Client, clock: ManualClock, **settings: Any) -> Delivery:
    return Delivery(
        store, client, clock, DeliverySettings(**{"workers": 8, **settings}), rng=random.Random(1)
    )


# -- batching ---------------------------------------------------------------------------------


def test_rows_of_one_identity_share_requests_of_at_most_25(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    same = [row(f"s{i:02d}", now, client_id="111.222") for i in range(26)]
    others = [row(f"o{i}", now) for i in range(3)]
    capture(store, same + others, now)
    client = make_client(ga4_server.url)
    report = delivery(store, client, clock).run()
    client.close()
    assert report.sent == 29 and report.requests == 2 + 3
    sizes = sorted(len(h.body["events"]) for h in ga4_server.ga4.hits)
    assert sizes == [1, 1, 1, 1, 25]
    assert all(r.status == Status.SENT for r in statuses(store).values())


def test_requests_go_concurrently_over_a_few_kept_alive_connections(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    capture(store, [row(f"k{i:03d}", now) for i in range(120)], now)  # 120 identities
    ga4_server.ga4.set_faults(Faults(latency_ms=20))
    client = make_client(ga4_server.url, pool_size=4)
    report = delivery(store, client, clock, workers=4).run()
    client.close()
    assert report.sent == 120 and report.requests == 120
    assert ga4_server.server.connections <= 4  # pooled keep-alive, one per worker at most


def test_batches_stay_under_130000_bytes() -> None:
    now = datetime.now(UTC)
    identity = Identity(client_id="1.2")
    big = {f"p{i}": "x" * 100 for i in range(24)}
    items = [
        (f"k{i}", stored_payload(identity, Ga4Event("generate_lead", big, now))) for i in range(60)
    ]
    batches = build_batches(items)
    assert sum(len(b.keys) for b in batches) == 60
    assert all(1 <= len(b.keys) <= 25 for b in batches)
    sizes = [len(b.body["events"]) for b in batches]
    assert sizes == [25, 25, 10]  # 25 x ~2.9 kB fits; the count limit cuts first
    huge = {f"p{i}": "y" * 100 for i in range(24)}
    huge_items = [
        (
            f"h{i}",
            stored_payload(
                identity,
                Ga4Event("generate_lead", {**huge, "items": [{"item_id": "z" * 100}] * 200}, now),
            ),
        )
        for i in range(10)
    ]
    from ga4sync.ga4.payload import body_size
    from ga4sync.ga4.rules import MAX_BODY_BYTES

    for batch in build_batches(huge_items):
        assert body_size(batch.body) < MAX_BODY_BYTES
        assert len(batch.keys) < 10


# -- outcomes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults,expected,reason_part",
    [
        (Faults(status_500=1.0), Status.RETRY, "GA4 answered 500"),
        (Faults(status_503=1.0, retry_after="120"), Status.RETRY, "Retry-After 120"),
        (Faults(status_429=1.0, retry_after="600"), Status.RETRY, "GA4 answered 429"),
        (Faults(reset_before=1.0), Status.UNKNOWN, "connection dropped after sending"),
        (Faults(reset_after=1.0), Status.UNKNOWN, "connection dropped after sending"),
        (Faults(stall=1.0, stall_seconds=1.0), Status.UNKNOWN, "read timeout"),
        (Faults(status_400=1.0), Status.INVALID, "GA4 answered 400"),
    ],
    ids=["500", "503", "429", "reset_before", "reset_after", "stall", "400"],
)
def test_outcome_per_failure(
    store: StateStore,
    ga4_server: Ga4Server,
    clock: ManualClock,
    faults: Faults,
    expected: Status,
    reason_part: str,
) -> None:
    now = clock.now()
    capture(store, [row("a", now)], now)
    ga4_server.ga4.set_faults(faults)
    client = make_client(ga4_server.url, read_timeout=0.2)
    delivery(store, client, clock).run()
    client.close()
    got = statuses(store)["a"]
    assert got.status == expected
    assert reason_part in got.reason
    if expected == Status.RETRY:
        wait = got.next_attempt_at.replace(tzinfo=UTC) - now
        floor = float(faults.retry_after or 0) if faults.status_500 == 0 else 0.0
        assert wait >= timedelta(seconds=max(floor, 15))  # backoff base 30 s, jitter >= 50 %
    assert store.attempts_for("a")[0].outcome == expected


def test_connection_refused_retries_then_dies(store: StateStore, clock: ManualClock) -> None:
    now = clock.now()
    capture(store, [row("a", now)], now)
    client = make_client(f"http://127.0.0.1:{closed_port()}")
    d = delivery(store, client, clock, max_attempts=3)
    seen = []
    for _ in range(3):
        d.run()
        seen.append(statuses(store)["a"].status)
        clock.advance(timedelta(hours=2))
    client.close()
    assert seen == [Status.RETRY, Status.RETRY, Status.DEAD]
    assert "cannot connect" in statuses(store)["a"].reason


def test_unknown_is_resent_only_for_purchase_with_transaction_id(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    rows = [
        row("p", now, event="purchase", params={"transaction_id": "T-1"}, resend_if_unknown=True),
        row("np", now, event="purchase", resend_if_unknown=True),  # no transaction_id
        row("lead", now, resend_if_unknown=True),  # flag set, but GA4 dedups only purchases
        row("plain", now, event="purchase", params={"transaction_id": "T-2"}),
    ]
    capture(store, rows, now)
    ga4_server.ga4.set_faults(Faults(reset_after=1.0))
    client = make_client(ga4_server.url)
    d = delivery(store, client, clock)
    d.run()
    got = {k: r.status for k, r in statuses(store).items()}
    assert got == {
        "p": Status.RETRY,
        "np": Status.UNKNOWN,
        "lead": Status.UNKNOWN,
        "plain": Status.UNKNOWN,
    }
    ga4_server.ga4.set_faults(Faults())
    clock.advance(timedelta(hours=2))
    d.run()
    client.close()
    assert statuses(store)["p"].status == Status.SENT
    tids = [e["params"].get("transaction_id") for e in ga4_server.ga4.events()]
    assert tids.count("T-1") == 2  # recorded twice; GA4 keeps one (same transaction_id)
    assert [e["params"]["row_key"] for e in ga4_server.ga4.counted_events()].count("p") == 1


def test_rows_that_broke_the_72h_window_while_waiting_are_skipped(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    capture(store, [row("old", now, age=timedelta(hours=71))], now)
    clock.advance(timedelta(hours=2))
    client = make_client(ga4_server.url)
    delivery(store, client, clock).run()
    client.close()
    got = statuses(store)["old"]
    assert got.status == Status.SKIPPED and got.reason.startswith("too_old")
    assert ga4_server.ga4.hits == []


# -- endpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint,base",
    [
        ("global", "https://www.google-analytics.com"),
        ("EU", "https://region1.google-analytics.com"),
        ("https://sgtm.example.com/", "https://sgtm.example.com"),
        ("https://sgtm.example.com/mp/collect", "https://sgtm.example.com"),
        ("http://127.0.0.1:8080/proxy/mp/collect", "http://127.0.0.1:8080/proxy"),
    ],
)
def test_endpoint_resolution(endpoint: str, base: str) -> None:
    assert resolve_base_url(endpoint) == base


def test_any_url_endpoint_with_path_prefix_is_used_as_given(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    capture(store, [row("a", now)], now)
    client = make_client(ga4_server.url + "/mp/collect")
    assert client.base_url == ga4_server.url
    assert delivery(store, client, clock).run().sent == 1
    client.close()
    assert ga4_server.ga4.hits[0].measurement_id == MEASUREMENT_ID


# -- --validate-remote ------------------------------------------------------------------------


def test_validate_remote_refuses_a_rule_google_rejects_and_remembers_good_rules(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    good = [row(f"g{i}", now, rule="qualified") for i in range(3)]
    # An event name production would accept silently; the sandbox answers with Google's
    # recorded NAME_INVALID (tests/contracts/ga4), word for word, whatever the name.
    bad = [row(f"b{i}", now, rule="won", event="_won") for i in range(2)]
    capture(store, good + bad, now)
    memo = RemoteCheckMemo()
    client = make_client(ga4_server.url)
    d = Delivery(store, client, clock, DeliverySettings(validate_remote=True), remote_memo=memo)
    report = d.run()
    got = statuses(store)
    assert {k: got[k].status for k in got} == {
        "g0": Status.SENT,
        "g1": Status.SENT,
        "g2": Status.SENT,
        "b0": Status.INVALID,
        "b1": Status.INVALID,
    }
    assert "validation server (--validate-remote) refused mapping rule `won`" in got["b0"].reason
    assert "NAME_INVALID at events: Event at index: [0] has invalid name" in got["b0"].reason
    assert memo.passed == {("mhash-1", "qualified")}
    assert report.remote_checks == 3  # first of `qualified`, both of `won`
    assert {e["params"]["row_key"] for e in ga4_server.ga4.events()} == {"g0", "g1", "g2"}
    capture(store, [row("g3", now, rule="qualified")], now)
    again = Delivery(
        store, client, clock, DeliverySettings(validate_remote=True), remote_memo=memo
    ).run()
    client.close()
    assert again.remote_checks == 0 and again.sent == 1


def test_validate_remote_unreachable_keeps_rows_for_later(
    store: StateStore, clock: ManualClock
) -> None:
    now = clock.now()
    capture(store, [row("a", now)], now)
    client = make_client(f"http://127.0.0.1:{closed_port()}")
    Delivery(store, client, clock, DeliverySettings(validate_remote=True)).run()
    client.close()
    got = statuses(store)["a"]
    assert got.status == Status.RETRY
    assert "validation server (--validate-remote) could not be asked" in got.reason


def test_run_validate_remote_flag_and_config(sandbox: SandboxEnvironment, state_url: str) -> None:
    sandbox.seed(count=10, seed=11)
    config = sandbox.write_config(state_url=state_url)
    result = CliRunner().invoke(main, ["--config", str(config), "run"])
    assert result.exit_code == 0, result.output
    assert sandbox.ga4.debug_requests == 0
    sandbox.seed(count=10, seed=12)
    result = CliRunner().invoke(main, ["--config", str(config), "run", "--validate-remote"])
    assert result.exit_code == 0, result.output
    checked = sandbox.ga4.debug_requests
    assert checked >= 1
    sandbox.seed(count=10, seed=13)
    text = config.read_text().replace("  endpoint:", "  validate_remote: true\n  endpoint:", 1)
    config.write_text(text)
    result = CliRunner().invoke(main, ["--config", str(config), "run"])
    assert result.exit_code == 0, result.output
    assert sandbox.ga4.debug_requests > checked


def test_429_stops_the_run_and_puts_queued_requests_back(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    capture(store, [row(f"t{i:02d}", now) for i in range(40)], now)  # 40 identities
    ga4_server.ga4.set_faults(Faults(status_429=1.0, retry_after="600", latency_ms=20))
    client = make_client(ga4_server.url)
    report = delivery(store, client, clock, workers=2).run()
    client.close()
    assert ga4_server.ga4.requests < 10  # it stopped asking after the first refusals
    counts = store.count_by_status()
    assert counts[Status.RETRY] == report.retry >= 10  # claimed: sent and refused, or held
    assert counts[Status.PENDING] == 40 - report.retry  # not even claimed this run
    rows = [r for r in statuses(store).values() if r.status == Status.RETRY]
    assert all(r.next_attempt_at.replace(tzinfo=UTC) - now >= timedelta(seconds=600) for r in rows)
    held = [r for r in rows if r.reason.startswith("not sent: GA4 asked to slow down")]
    assert len(held) >= report.retry - report.requests
    assert store.attempts_for(held[0].key) == []  # never attempted, nothing recorded
    # ...and not counted: a long rate limit must not use up max_attempts.
    assert all(r.attempts == 0 for r in held), [r.attempts for r in held]
    refused = [r for r in rows if r not in held]
    assert refused and all(r.attempts == 1 for r in refused)


def test_backoff_grows_with_jitter_and_respects_retry_after() -> None:
    settings = DeliverySettings(backoff_base=timedelta(seconds=30), backoff_cap=timedelta(hours=1))
    rng = random.Random(3)
    for attempt, ceiling in ((1, 30), (2, 60), (4, 240), (20, 3600)):
        wait = backoff(attempt, settings, None, rng).total_seconds()
        assert ceiling / 2 <= wait <= ceiling
    assert backoff(1, settings, 900.0, rng) == timedelta(seconds=900)


def test_exhausted_purchase_that_may_be_in_ga4_is_unknown_not_dead(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    now = clock.now()
    rows = [
        row("p", now, event="purchase", params={"transaction_id": "T-9"}, resend_if_unknown=True),
        row("lead", now),
    ]
    capture(store, rows, now)
    ga4_server.ga4.set_faults(Faults(reset_after=1.0))  # attempt 1: recorded, answer lost
    client = make_client(ga4_server.url)
    d = delivery(store, client, clock, max_attempts=2)
    d.run()
    ga4_server.ga4.set_faults(Faults(status_500=1.0))  # attempt 2: refused
    clock.advance(timedelta(hours=2))
    d.run()
    client.close()
    got = statuses(store)
    assert got["p"].status == Status.UNKNOWN
    assert "an earlier attempt may have reached GA4" in got["p"].reason
    assert got["lead"].status == Status.UNKNOWN  # its first answer was lost: never resent
    assert [e["params"]["row_key"] for e in ga4_server.ga4.events()].count("p") == 1


# -- a state store outage keeps GA4's answers ------------------------------------------------


class StoreOutage:
    """Another program holds the store's write lock: the SQLite file locked past the busy
    timeout, or a PostgreSQL session holding the outbox past the lock timeout. The store under
    test waits 100 ms for a lock (instead of 30 s) so the outage is seen quickly."""

    def __init__(self, state_url: str) -> None:
        self.state_url = state_url
        self.active = threading.Event()
        self._sqlite: sqlite3.Connection | None = None
        self._pg: sa.Connection | None = None
        self._pg_engine: sa.Engine | None = None

    def open_store(self) -> StateStore:
        if self.state_url.startswith("sqlite"):
            store = StateStore.open(self.state_url)

            def short_busy_timeout(dbapi_conn: sqlite3.Connection, _record: object) -> None:
                dbapi_conn.execute("PRAGMA busy_timeout=100")

            sa.event.listen(store.engine, "connect", short_busy_timeout)
            store.engine.dispose()
            return store
        # Migrated first with the normal timeouts: migrations wait on an advisory lock that
        # parallel test runs share.
        StateStore.open(self.state_url).close()
        return StateStore.open(self.state_url + "%20-clock_timeout%3D100", migrate=False)

    def begin(self) -> None:
        if self.state_url.startswith("sqlite"):
            self._sqlite = sqlite3.connect(
                self.state_url.removeprefix("sqlite:///"),
                isolation_level=None,
                check_same_thread=False,
            )
            self._sqlite.execute("BEGIN EXCLUSIVE")
        else:
            self._pg_engine = sa.create_engine(self.state_url)
            self._pg = self._pg_engine.connect()
            self._pg.execute(sa.text("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE"))
        self.active.set()

    def end(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None and self._pg_engine is not None:
            self._pg.rollback()
            self._pg.close()
            self._pg_engine.dispose()
            self._pg = None
        self.active.clear()


@pytest.fixture
def outage(state_url: str) -> Iterator[StoreOutage]:
    made = StoreOutage(state_url)
    try:
        yield made
    finally:
        made.end()


def outage_at_first_answer(outage: StoreOutage, hold_s: float | None) -> OutcomeHook:
    """Starts the outage just before the first answers are recorded; ends it after `hold_s`."""

    started = threading.Event()

    def hook(_row: object, _status: object, _outcome: object) -> None:
        if started.is_set():
            return
        started.set()
        outage.begin()
        if hold_s is not None:
            threading.Timer(hold_s, outage.end).start()

    return hook


def test_answers_outlive_a_store_outage_and_are_recorded_when_it_ends(
    state_url: str, outage: StoreOutage, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    store = outage.open_store()
    now = clock.now()
    capture(store, [row(f"d{i:02d}", now) for i in range(40)], now)
    ga4_server.ga4.set_faults(Faults(latency_ms=20))
    client = make_client(ga4_server.url)
    d = Delivery(
        store,
        client,
        clock,
        DeliverySettings(workers=4),
        on_outcome=outage_at_first_answer(outage, hold_s=2.0),
        rng=random.Random(1),
    )
    try:
        for _ in range(3):  # rows held back while the store was down go on the next run
            d.run()
            if set(store.count_by_status()) == {Status.SENT}:
                break
        assert not outage.active.is_set()
        assert store.count_by_status() == {Status.SENT: 40}
        got = Counter(e["params"]["row_key"] for e in ga4_server.ga4.events())
        assert sorted(got) == [f"d{i:02d}" for i in range(40)] and set(got.values()) == {1}
    finally:
        client.close()
        store.close()


def test_answers_not_recorded_before_the_lease_ends_are_named(
    state_url: str, outage: StoreOutage, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """The store stays down past the lease: the run fails saying which answered rows could not
    be recorded; once it is back they show `unknown` (GA4 has them), never-sent ones `pending`."""
    store = outage.open_store()
    now = clock.now()
    capture(store, [row(f"d{i:02d}", now) for i in range(30)], now)
    ga4_server.ga4.set_faults(Faults(latency_ms=20))
    client = make_client(ga4_server.url)
    settings = DeliverySettings(workers=2, lease=timedelta(seconds=1))
    d = Delivery(
        store, client, clock, settings, on_outcome=outage_at_first_answer(outage, hold_s=None)
    )
    try:
        with pytest.raises(StateStoreError) as failed:
            d.run()
        outage.end()
        in_ga4 = {e["params"]["row_key"] for e in ga4_server.ga4.events()}
        message = str(failed.value)
        assert f"GA4 accepted {len(in_ga4)} of them: do not resend these" in message
        assert all(key in message for key in sorted(in_ga4)[:20])
        clock.advance(timedelta(seconds=5))
        store.expire_leases(clock.now())
        final = statuses(store)
        assert {k for k, r in final.items() if r.status == Status.UNKNOWN} == in_ga4
        assert {k for k, r in final.items() if r.status == Status.PENDING} == set(final) - in_ga4
    finally:
        client.close()
        store.close()


# -- checking again before sending ------------------------------------------------------------


def test_a_row_as_captured_is_still_checked_against_the_time_it_is_sent(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """Capture checks every rule but the time window; a row untouched since is checked again
    only for what depends on now. That still refuses an event stamped in the future (a CRM
    clock ahead) and a user property whose timestamp left GA4's 72 h window while it waited."""
    now = clock.now()
    ahead = row("ahead", now, age=-timedelta(hours=3))
    aged = row("aged", now)
    aged_payload = {
        **aged.payload,
        "user_properties": {
            "tier": {"value": "gold", "timestamp_micros": to_micros(now - timedelta(hours=71))}
        },
    }
    aged = dc_replace(aged, payload=aged_payload, group_key=group_key(aged_payload))
    opened = now  # this process started before it captured: its capture checked the rows
    capture(store, [ahead, aged, row("fine", now)], now)
    clock.advance(timedelta(hours=2))
    client = make_client(ga4_server.url)
    sender = delivery(store, client, clock)
    sender._opened_at = opened
    report = sender.run()
    client.close()
    got = statuses(store)
    assert {k: got[k].status for k in got} == {
        "ahead": Status.INVALID,
        "aged": Status.INVALID,
        "fine": Status.SENT,
    }
    assert "is in the future" in got["ahead"].reason
    assert "too far in the past" in got["aged"].reason
    assert report.invalid == 2 and report.requests == 1
    assert [e["params"]["row_key"] for e in ga4_server.ga4.events()] == ["fine"]


def test_a_row_an_earlier_process_captured_gets_every_check(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """A row left in the outbox by an earlier ga4sync (perhaps an older version whose rules
    were looser) was not checked by the rules this process runs: it gets the full check, so
    a payload today's rules refuse is `invalid`, never sent. Here the earlier capture let a
    reserved parameter name through."""
    now = clock.now()
    loose = row("loose", now)
    event = {
        **loose.payload["event"],
        "params": {**loose.payload["event"]["params"], "firebase_x": 1},
    }
    loose_payload = {**loose.payload, "event": event}
    loose = dc_replace(loose, payload=loose_payload, group_key=group_key(loose_payload))
    capture(store, [loose, row("fine", now)], now)
    clock.advance(timedelta(minutes=5))  # a later process (a new run) opens the outbox
    client = make_client(ga4_server.url)
    report = delivery(store, client, clock).run()
    client.close()
    got = statuses(store)
    assert {k: got[k].status for k in got} == {"loose": Status.INVALID, "fine": Status.SENT}
    assert "firebase_x" in (got["loose"].reason or "")
    assert report.invalid == 1
    assert [e["params"]["row_key"] for e in ga4_server.ga4.events()] == ["fine"]


def test_only_a_row_nobody_touched_since_capture_counts_as_captured(
    store: StateStore, clock: ManualClock
) -> None:
    """A retried, resent or requeued row may carry a payload capture never passed (a resent
    `invalid` row): only the first claim of an untouched row skips the checks capture made."""
    now = clock.now()
    capture(store, [row("new", now), row("retried", now), row("resent", now)], now)
    first = store.claim_due(now, limit=10, lease=timedelta(minutes=5))
    assert {r.key: r.as_captured for r in first} == {"new": True, "retried": True, "resent": True}
    token = first[0].claim_token
    store.settle(
        [
            Settlement("new", token, Status.RETRY, reason="not sent", next_attempt_at=now),
            Settlement(
                "retried", token, Status.RETRY, reason="GA4 answered 503", next_attempt_at=now
            ),
            Settlement("resent", token, Status.INVALID, reason="GA4 rule ...", attempted=False),
        ],
        now,
    )
    store.resend(["resent"], now, reason="fixed by hand")
    again = {r.key: r for r in store.claim_due(now, limit=10, lease=timedelta(minutes=5))}
    assert {k: r.as_captured for k, r in again.items()} == {
        "new": False,
        "retried": False,
        "resent": False,
    }


def test_a_clamped_row_and_a_resent_row_get_every_check(
    store: StateStore, ga4_server: Ga4Server, clock: ManualClock
) -> None:
    """Clamping adds the `crm_changed_at` parameter (one too many for an event with 25), and
    a resent row may hold what capture refused: both are checked in full before sending."""
    now = clock.now()
    full = {f"p{i:02d}": i for i in range(22)}  # + value, currency, row_key = 25
    old = row("old", now, params=full, age=timedelta(hours=80))
    bad = row("bad", now, event="_bad")
    capture(store, [old, bad], now)
    token = store.claim_due(now, limit=10, lease=timedelta(minutes=5))[0].claim_token
    store.settle([Settlement("bad", token, Status.INVALID, reason="x", attempted=False)], now)
    store.resend(["bad"], now, reason="sent again by hand")
    clock.advance(timedelta(minutes=10))  # past the lease of the claim above
    store.expire_leases(clock.now())
    client = make_client(ga4_server.url)
    report = delivery(store, client, clock, old_events="clamp").run()
    client.close()
    got = statuses(store)
    assert got["old"].status == Status.INVALID
    assert got["bad"].status == Status.INVALID and "_bad" in got["bad"].reason
    assert report.invalid == 2 and ga4_server.ga4.hits == []


@pytest.mark.parametrize("seed", range(5))
def test_batch_sizes_are_those_of_the_bodies_sent(seed: int) -> None:
    """Sizes are summed per event (each encoded once); they must equal the encoded body (the
    bytes the sender writes), and the cuts those of measuring every candidate body whole."""
    rnd = random.Random(seed)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    items = []
    for i in range(300):
        text = "".join(rnd.choice('aé€𝄞"\\ x') for _ in range(rnd.randint(0, 3000)))
        identity = Identity(client_id=f"{rnd.randint(1, 3)}.1700000000")
        items.append((f"k{i}", stored_payload(identity, Ga4Event("e", {"t": text, "i": i}, now))))
    batches = build_batches(items)
    for batch in batches:
        sent = json.dumps(batch.body, separators=(",", ":"), ensure_ascii=False).encode()
        assert batch.data == sent and batch.size == len(sent)
        assert batch.size < MAX_BODY_BYTES - 2_000 or len(batch.keys) == 1
        assert len(batch.keys) <= 25
    assert sorted(k for b in batches for k in b.keys) == sorted(k for k, _ in items)
    assert [b.keys for b in batches] == [b.keys for b in _whole_body_cuts(items)]


def _whole_body_cuts(items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The cuts as made before sizes were summed: every candidate body measured whole."""
    from ga4sync.ga4.payload import Batch, body_size, request_body

    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, payload in items:
        groups.setdefault(group_key(payload), []).append((key, payload))
    out = []
    for members in groups.values():
        current: list[tuple[str, dict[str, Any]]] = []
        for key, payload in members:
            candidate = current + [(key, payload)]
            if current and (
                len(candidate) > 25
                or body_size(request_body([p for _, p in candidate])) >= MAX_BODY_BYTES - 2_000
            ):
                out.append(Batch([k for k, _ in current], {}))
                candidate = [(key, payload)]
            current = candidate
        if current:
            out.append(Batch([k for k, _ in current], {}))
    return out
