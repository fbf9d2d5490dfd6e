"""The state store's promises on both backends: migrations, capture lock, disjoint claims,
prune keeps what dedup needs, malformed CRM records land as invalid."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from ga4sync.core.errors import ConfigError
from ga4sync.core.model import Status
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state import admin, schema
from ga4sync.state.errors import describe
from ga4sync.state.locks import LockLost
from ga4sync.state.owners import ProcessOwner
from ga4sync.state.readings import AttemptEntry, OutboxEntry, Watermark
from ga4sync.state.store import OutboxRow, Settlement, StateStore

from tests.conftest import EngineFactory

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def outbox_row(key: str, **kw: object) -> OutboxRow:
    values: dict[str, object] = {
        "key": key,
        "connector": "salesforce",
        "object_type": "Opportunity",
        "record_id": f"006{key}",
        "field": "StageName",
        "from_value": "Prospecting",
        "to_value": "Closed Won",
        "changed_at": NOW - timedelta(hours=1),
        "detected_by": "history",
        "status": Status.PENDING,
        "event_name": "purchase",
        "payload": {"client_id": "1.2", "events": [{"name": "purchase"}]},
        "group_key": "1.2",
    }
    values.update(kw)
    return OutboxRow(**values)  # type: ignore[arg-type]


def fill(store: StateStore, n: int, **kw: object) -> list[str]:
    rows = [outbox_row(f"k{i:05d}", **kw) for i in range(n)]
    store.capture(
        connector="salesforce", object_type="Opportunity", rows=rows, watermark=None, now=NOW
    )
    return [r.key for r in rows]


# -- migrations ----------------------------------------------------------------------------
def test_migrate_twice_is_a_no_op(state_url: str) -> None:
    first = StateStore.open(state_url)
    fill(first, 3)
    first.close()
    again = StateStore.open(state_url)
    again.migrate()
    with again.engine.connect() as conn:
        versions = list(conn.execute(sa.select(schema.schema_version.c.version)).scalars())
    assert versions == list(range(1, schema.SCHEMA_VERSION + 1))
    assert len(again.list_outbox()) == 3
    again.close()


def test_newer_schema_is_refused_with_a_clear_message(state_url: str) -> None:
    store = StateStore.open(state_url)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(schema.schema_version).values(version=schema.SCHEMA_VERSION + 1))
    store.close()
    with pytest.raises(ConfigError) as err:
        StateStore.open(state_url)
    message = str(err.value)
    assert f"schema version {schema.SCHEMA_VERSION + 1}" in message
    assert "upgrade ga4sync" in message


def test_two_processes_migrating_at_once_are_safe(state_url: str) -> None:
    errors: list[BaseException] = []
    stores: list[StateStore] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait()
            stores.append(StateStore.open(state_url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].schema_version() == schema.SCHEMA_VERSION
    with stores[0].engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(schema.schema_version)).scalar()
    assert n == schema.SCHEMA_VERSION, "a migration ran twice"
    for s in stores:
        s.close()


# -- capture lock --------------------------------------------------------------------------
def test_two_processes_never_hold_one_capture_lock(state_url: str) -> None:
    a, b = StateStore.open(state_url), StateStore.open(state_url)
    try:
        ttl = timedelta(minutes=15)
        lock_a = a.capture_lock("capture:salesforce:daemon", "hostA:1:x", ttl)
        lock_b = b.capture_lock("capture:salesforce:daemon", "hostB:2:y", ttl)
        other = b.capture_lock("capture:hubspot:daemon", "hostB:2:y", ttl)
        assert lock_a.acquire(NOW)
        assert not lock_b.acquire(NOW), "two holders of one connector's capture lock"
        assert other.acquire(NOW), "another connector must not be blocked"
        lock_a.renew(NOW)
        lock_a.release()
        assert lock_b.acquire(NOW)
        lock_b.release()
        other.release()
    finally:
        a.close()
        b.close()


def test_capture_lock_of_a_dead_process_is_free_at_once(state_url: str) -> None:
    """SIGKILL must not block capture: PG drops the session lock, SQLite sees the pid gone."""
    import socket
    import subprocess
    import sys

    store = StateStore.open(state_url)
    try:
        code = (
            "import sys,time\n"
            "from datetime import UTC, datetime, timedelta\n"
            "from state.store import StateStore\n"
            "s = StateStore.open(sys.argv[1])\n"
            "import os, socket\n"
            "owner = f'{socket.gethostname()}:{os.getpid()}:x'\n"
            "lock = s.capture_lock('capture:salesforce:daemon', owner, timedelta(minutes=15))\n"
            "assert lock.acquire(datetime.now(UTC))\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n"
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", code, state_url], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        owner = f"{socket.gethostname()}:{999_999_999}:z"
        mine = store.capture_lock("capture:salesforce:daemon", owner, timedelta(minutes=15))
        assert not mine.acquire(datetime.now(UTC))
        holder.kill()
        holder.wait()
        # PostgreSQL frees the lock when the killed client's backend sees the socket close:
        # at once on an idle machine, a moment later on a loaded one.
        deadline = time.monotonic() + 30
        acquired = mine.acquire(datetime.now(UTC))
        while not acquired and time.monotonic() < deadline:
            time.sleep(0.1)
            acquired = mine.acquire(datetime.now(UTC))
        assert acquired, "a killed holder still blocks capture"
        mine.release()
    finally:
        store.close()


def test_a_lost_postgres_lock_stops_capture(state_url: str) -> None:
    if not state_url.startswith("postgresql"):
        pytest.skip("advisory locks are PostgreSQL's")
    store = StateStore.open(state_url)
    try:
        lock = store.capture_lock("capture:salesforce:daemon", "me", timedelta(minutes=1))
        assert lock.acquire(NOW)
        pid = lock._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()  # type: ignore[union-attr]
        lock._conn.commit()  # type: ignore[union-attr]
        with store.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(LockLost):
            lock.renew(NOW)
        lock.release()
    finally:
        store.close()


# -- delivery claims -----------------------------------------------------------------------
def test_concurrent_claims_never_share_a_row(state_url: str) -> None:
    setup = StateStore.open(state_url)
    keys = fill(setup, 600)
    setup.close()
    claimed: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)
    # Every claimer's first claim is in before any goes on, so the claims interleave on any
    # machine (otherwise one fast thread may drain the queue and the test proves nothing).
    first_claims_in = threading.Barrier(4)

    def claimer(i: int) -> None:
        store = StateStore.open(state_url, migrate=False)
        try:
            start.wait()
            first = True
            while True:
                rows = store.claim_due(NOW, limit=25, lease=timedelta(minutes=5))
                if first:
                    first = False
                    first_claims_in.wait(timeout=120)
                if not rows:
                    return
                claimed[i] += [r.key for r in rows]
        finally:
            store.close()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = Counter(k for part in claimed for k in part)
    assert max(everything.values()) == 1, "two claimers got the same row"
    assert set(everything) == set(keys)
    assert all(claimed), "every claimer's first claim got rows of its own"


def test_expired_lease_becomes_unknown_or_retry_for_dedupable_purchase(store: StateStore) -> None:
    """Only rows whose request was started may be in GA4; the others are simply queued again."""
    fill(store, 3)
    store.capture(
        connector="salesforce",
        object_type="Opportunity",
        rows=[outbox_row("p1", resend_if_unknown=True)],
        watermark=None,
        now=NOW,
    )
    claimed = store.claim_due(NOW, limit=10, lease=timedelta(seconds=30))
    assert len(claimed) == 4
    token = claimed[0].claim_token
    assert store.mark_send_started([(["k00000", "k00001"], token), (["p1"], token)], NOW) == [
        True,
        True,
    ]
    assert store.expire_leases(NOW + timedelta(seconds=10)) == 0
    assert store.expire_leases(NOW + timedelta(minutes=1)) == 4
    rows = {r.key: r for r in store.list_outbox()}
    status = {k: r.status for k, r in rows.items()}
    assert status == {"k00000": "unknown", "k00001": "unknown", "k00002": "pending", "p1": "retry"}
    assert rows["k00002"].attempts == 0, "a request that never left is not an attempt"
    assert "before its request was sent" in rows["k00002"].reason


def test_send_started_is_refused_for_rows_no_longer_held(store: StateStore) -> None:
    """A sender whose lease ran out (rows re-queued and claimed by another) must not send."""
    fill(store, 1)
    first = store.claim_due(NOW, limit=10, lease=timedelta(seconds=30))
    store.expire_leases(NOW + timedelta(minutes=1))
    second = store.claim_due(NOW + timedelta(minutes=1), limit=10, lease=timedelta(seconds=30))
    assert [r.key for r in second] == ["k00000"]
    old, new = first[0].claim_token, second[0].claim_token
    assert store.mark_send_started([(["k00000"], old), (["k00000"], new)], NOW) == [False, True]


def test_older_database_is_listed_as_it_is_and_gains_the_send_started_column(
    state_url: str,
) -> None:
    first = StateStore.open(state_url)
    fill(first, 1)
    with first.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE outbox DROP COLUMN send_started_at"))
        conn.execute(
            sa.delete(schema.schema_version).where(
                schema.schema_version.c.version >= schema.SEND_STARTED_VERSION
            )
        )
    first.close()
    reader = StateStore.open_read_only(state_url)
    try:
        assert [r.key for r in reader.list_outbox()] == ["k00000"]
        assert [r.key for r in reader.iter_outbox_summary()] == ["k00000"]  # outbox list
    finally:
        reader.close()
    store = StateStore.open(state_url)
    try:
        assert store.schema_version() == schema.SCHEMA_VERSION
        claimed = store.claim_due(NOW, limit=10, lease=timedelta(seconds=30))
        assert store.mark_send_started([(["k00000"], claimed[0].claim_token)], NOW) == [True]
    finally:
        store.close()


# -- prune ---------------------------------------------------------------------------------
def test_prune_keeps_what_dedup_needs(store: StateStore) -> None:
    old = NOW - timedelta(days=200)
    rows = [
        outbox_row("sent_plain", changed_at=old),
        outbox_row("sent_once", changed_at=old, once_key="o1"),
        outbox_row("skipped_old", changed_at=old, status=Status.SKIPPED, reason="no_rule: x"),
        outbox_row("unknown_old", changed_at=old),
        outbox_row("recent_skip", changed_at=NOW, status=Status.SKIPPED, reason="no_rule: y"),
        outbox_row(
            "other_conn", connector="hubspot", changed_at=old, status=Status.SKIPPED, reason="z"
        ),
    ]
    store.capture(
        connector="salesforce", object_type="Opportunity", rows=rows, watermark=None, now=old
    )
    claims = store.claim_due(old, limit=10, lease=timedelta(minutes=5))
    from ga4sync.state.store import Settlement

    store.settle(
        [
            Settlement(
                c.key,
                c.claim_token,
                Status.UNKNOWN if c.key == "unknown_old" else Status.SENT,
                http_status=204,
            )
            for c in claims
        ],
        old,
    )
    # hubspot's watermark says it may still re-read changes from 250 days ago
    result = store.prune(
        older_than=NOW - timedelta(days=90),
        keep_since={"salesforce": NOW - timedelta(days=1), "hubspot": old - timedelta(days=50)},
    )
    left = {r.key for r in store.list_outbox()}
    assert left == {"sent_once", "unknown_old", "recent_skip", "other_conn"}
    assert (result.deleted, result.kept_for_once, result.kept_in_window) == (2, 1, 2)
    assert store.attempts_for("sent_plain") == []
    assert store.attempts_for("sent_once") != []


# -- malformed CRM records -----------------------------------------------------------------
def test_malformed_history_rows_are_invalid_and_the_page_goes_on(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    sandbox.seed(count=10, seed=3)
    history = sandbox.salesforce.data.objects["OpportunityHistory"]
    some = next(iter(history.values()))
    at = some["CreatedDate"] + timedelta(seconds=1)
    bad = {
        "008BADNOOPP0001": {**some, "Id": "008BADNOOPP0001", "OpportunityId": None},
        "008BADSTAGE0002": {**some, "Id": "008BADSTAGE0002", "StageName": None},
    }
    for hid, row in bad.items():
        history[hid] = {**row, "CreatedDate": at, "SystemModstamp": at}
    engine, _ = make_engine()
    report = engine.run_once()
    invalid = {r.source_ref: r.reason for r in engine.store.list_outbox(statuses=["invalid"])}
    assert "no Id/OpportunityId" in invalid["OpportunityHistory/008BADNOOPP0001"]
    assert "StageName is empty" in invalid["OpportunityHistory/008BADSTAGE0002"]
    assert report.captures[0].rejected == 2
    assert engine.store.count_by_status().get("sent", 0) > 0, "the good records did not go on"


def test_engine_skips_capture_while_another_process_holds_the_connector(
    sandbox: SandboxEnvironment, make_engine: EngineFactory
) -> None:
    sandbox.seed(count=5, seed=9)
    first, _ = make_engine()
    second, _ = make_engine()
    held = first.store.capture_lock(
        "capture:salesforce:daemon", "otherhost:1:x", timedelta(hours=1)
    )
    assert held.acquire(datetime.now(UTC))
    try:
        report = second.capture("salesforce")
        assert report.status == "locked" and report.captured == 0
        assert second.store.list_outbox() == []
    finally:
        held.release()
    assert second.capture("salesforce").captured > 0


def test_resend_and_discard_of_more_rows_than_one_statement_takes(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes 65,535 parameters per statement; months of `unknown` rows exceed it.
    The keys go in chunks (made tiny here), still in one transaction."""
    monkeypatch.setattr(admin, "KEY_CHUNK", 7)
    keys = fill(store, 30, status=Status.UNKNOWN)
    assert store.discard(keys, NOW, "in GA4") == 30
    assert store.count_by_status() == {"discarded": 30}
    assert store.resend(store.keys_with_status(["discarded"]), NOW, "not in GA4") == 30
    assert store.count_by_status() == {"pending": 30}


def test_a_refused_statement_is_not_called_unreachable(store: StateStore) -> None:
    with pytest.raises(sa.exc.SQLAlchemyError) as raised, store.engine.connect() as conn:
        conn.execute(sa.text("SELECT no_such_column FROM outbox"))
    error = describe(raised.value, None)
    assert "refused the command" in str(error) and error.exit_code == 1


def _as_version_1(state_url: str) -> None:
    """A database as ga4sync wrote it before runs had owners (schema version 1)."""
    StateStore.open(state_url).close()
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        for column in schema.RUN_OWNER_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE runs DROP COLUMN {column}"))
        conn.execute(sa.delete(schema.schema_version).where(schema.schema_version.c.version > 1))
        conn.execute(
            sa.insert(schema.runs).values(
                connector="salesforce",
                kind="run",
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
                status="running",
                captured=0,
                rejected=0,
                api_calls=0,
            )
        )
    engine.dispose()


def test_a_version_1_database_is_read_as_it_is_and_upgraded_by_a_writer(state_url: str) -> None:
    _as_version_1(state_url)
    with StateStore.open_read_only(state_url) as reader:
        assert reader.version == 1
        run = reader.last_run("salesforce")
        assert run is not None and run.status == "running" and run.owner is None
    with StateStore.open(state_url) as writer:
        assert writer.schema_version() == schema.SCHEMA_VERSION
        old = writer.last_run("salesforce")
        assert old is not None and old.heartbeat_at is None
        run_id = writer.start_run("salesforce", "run", datetime(2026, 1, 2, tzinfo=UTC))
        new = writer.last_run("salesforce")
        assert new is not None and new.id == run_id
        assert new.owner == ProcessOwner.current()


# -- what the admin commands read --------------------------------------------------------------
def test_admin_readings_are_typed_rows_in_utc(store: StateStore) -> None:
    """`outbox list/show`, `state prune` and the benches read frozen rows, never a table's
    dicts; times come back in UTC on both backends (SQLite keeps them naive)."""
    store.capture(
        connector="salesforce",
        object_type="Opportunity",
        rows=[outbox_row("k1"), outbox_row("k2")],
        watermark=NOW - timedelta(minutes=5),
        now=NOW,
    )
    (claimed,) = store.claim_due(NOW, limit=1, lease=timedelta(minutes=5), connector="salesforce")
    store.settle([Settlement(claimed.key, claimed.claim_token, Status.SENT, http_status=204)], NOW)
    run_id = store.start_run("salesforce", "run", NOW - timedelta(seconds=30))
    store.finish_run(
        run_id, NOW, status="ok", captured=2, rejected=0, api_calls=3, api_used=10,
        api_limit=100, warnings=["first", "second"],
    )  # fmt: skip

    rows = {r.key: r for r in store.list_outbox()}
    assert all(isinstance(r, OutboxEntry) for r in rows.values())
    sent = rows[claimed.key]
    assert sent.status == Status.SENT and sent.attempts == 1 and sent.live is False
    assert sent.changed_at == NOW - timedelta(hours=1) and sent.changed_at.tzinfo is not None
    assert sent.sent_at == NOW and sent.resend_if_unknown is False
    (listed,) = store.iter_outbox_summary(statuses=[Status.SENT])
    assert listed.key == sent.key and listed.payload is None and listed.record_json is None

    (attempt,) = store.attempts_for(claimed.key)
    assert isinstance(attempt, AttemptEntry)
    assert (attempt.outcome, attempt.http_status, attempt.attempted_at) == ("sent", 204, NOW)

    (run,) = store.last_runs()
    assert run == store.last_run("salesforce")
    assert (run.status, run.api_calls, run.warnings) == ("ok", 3, ["first", "second"])

    (mark,) = store.watermarks()
    assert mark == Watermark("salesforce", "Opportunity", "daemon", NOW - timedelta(minutes=5), NOW)
