"""State store throughput: capture (transitions/s) and claim+settle (rows/s), both backends.

    python -m bench.state --rows 100000

ga4sync: `StateStore.capture` one transaction per CRM page (2,000 rows, Salesforce's page),
then delivery's loop shape: `claim_due` 500 rows at a time and `settle` them as sent in one
executemany. Naive baseline, measured in the same run on the same schema: one transaction per
inserted row, and a per-row claim (select one due row, mark it, commit; then mark it sent,
commit), as a hand-written queue usually starts. The naive side runs on a sample (default
5,000 rows) because at one commit per row 100k rows would take minutes; rates are per second.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from ga4sync.core.model import Status
from ga4sync.state import schema as s
from ga4sync.state.store import OutboxRow, Settlement, StateStore

from bench.common import peak_rss_mb, result_line

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PAGE = 2000
NOW = datetime.now(UTC)


def make_rows(n: int, prefix: str) -> list[OutboxRow]:
    rng = random.Random(n)
    rows = []
    for i in range(n):
        cid = f"{rng.randrange(10**9)}.{rng.randrange(10**9)}"
        rows.append(
            OutboxRow(
                key=f"{prefix}{i:010d}",
                connector="salesforce",
                object_type="Opportunity",
                record_id=f"006{i:015d}",
                field="StageName",
                from_value="Prospecting",
                to_value="Closed Won",
                changed_at=NOW - timedelta(seconds=rng.randrange(200_000)),
                detected_by="history",
                status=Status.PENDING,
                source_ref=f"OpportunityHistory/008{i:015d}",
                rule="won",
                event_name="purchase",
                payload={
                    "client_id": cid,
                    "event": {"name": "purchase", "params": {"value": 1200.0, "currency": "USD"}},
                },
                group_key=cid,
                once_key=f"o{i:020d}" if i % 2 else None,
                record={"Id": f"006{i:015d}", "Amount": 1200.0, "GA_Client_ID__c": cid},
            )
        )
    return rows


@contextmanager
def backend(name: str, tmp: Path) -> Iterator[str]:
    if name == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    schema = f"bench_{random.randrange(16**8):08x}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def timed(fn: Callable[[], int]) -> float:
    """Rows per second of fn (which returns how many rows it handled)."""
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def ga4sync_capture(store: StateStore, rows: list[OutboxRow]) -> int:
    for i in range(0, len(rows), PAGE):
        page = rows[i : i + PAGE]
        store.capture(
            connector="salesforce",
            object_type="Opportunity",
            rows=page,
            watermark=max(r.changed_at for r in page),
            now=NOW,
        )
    return len(rows)


def ga4sync_claim(store: StateStore) -> int:
    done = 0
    now = NOW + timedelta(seconds=1)
    while claimed := store.claim_due(now, limit=500, lease=timedelta(minutes=5)):
        store.settle(
            [Settlement(c.key, c.claim_token, Status.SENT, http_status=204) for c in claimed], now
        )
        done += len(claimed)
    return done


def naive_capture(store: StateStore, rows: list[OutboxRow]) -> int:
    for row in rows:
        with store.engine.begin() as conn:
            conn.execute(
                sa.insert(s.outbox).values(**store._row_values(row, row.status, None, NOW))
            )
    return len(rows)


def naive_claim(store: StateStore) -> int:
    o = s.outbox
    done = 0
    pg = store.dialect == "postgresql"
    while True:
        with store.engine.begin() as conn:
            q = sa.select(o.c.key).where(o.c.status == "pending").limit(1)
            key = conn.execute(q.with_for_update(skip_locked=True) if pg else q).scalar()
            if key is None:
                return done
            conn.execute(sa.update(o).where(o.c.key == key).values(status="sending"))
        with store.engine.begin() as conn:
            conn.execute(sa.update(o).where(o.c.key == key).values(status="sent", sent_at=NOW))
        done += 1


def measure(name: str, n_rows: int, n_naive: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, backend(name, Path(tmp)) as url:
        store = StateStore.open(url)
        rows = make_rows(n_rows, "g")
        cap = timed(lambda: ga4sync_capture(store, rows))
        again = timed(lambda: ga4sync_capture(store, rows))  # a re-read: all duplicates
        claim = timed(lambda: ga4sync_claim(store))
        naive_rows = make_rows(n_naive, "n")
        ncap = timed(lambda: naive_capture(store, naive_rows))
        nclaim = timed(lambda: naive_claim(store))
        store.close()
    print(
        f"{name}: capture {cap:,.0f} transitions/s (re-read {again:,.0f}/s), "
        f"claim+settle {claim:,.0f} rows/s over {n_rows:,} rows; naive capture "
        f"{ncap:,.0f}/s, naive claim {nclaim:,.0f}/s over {n_naive:,} rows",
        flush=True,
    )
    return {
        f"{name}_capture_tps": cap,
        f"{name}_naive_capture_tps": ncap,
        f"{name}_claim_rps": claim,
        f"{name}_naive_claim_rps": nclaim,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=5_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    names = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    figures: dict[str, float] = {}
    for name in names:
        figures |= measure(name, args.rows, args.naive_rows)
    first = names[0]
    print(
        result_line(
            ratio=figures[f"{first}_capture_tps"] / figures[f"{first}_naive_capture_tps"],
            claim_ratio=figures[f"{first}_claim_rps"] / figures[f"{first}_naive_claim_rps"],
            **{k: round(v) for k, v in figures.items()},
            rows=args.rows,
            rss_mb=peak_rss_mb(),
        )
    )


if __name__ == "__main__":
    main()
