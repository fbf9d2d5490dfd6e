"""CSV import: ga4sync's chunked connector vs the load-everything-then-insert way, same file.

    python -m bench.csv_import --rows 200000

ga4sync: `Engine.capture` of a `type: csv` connector into a SQLite state store: one byte pass
hashes the file and settles its encoding, then Python's csv reader parses it once, `chunk_rows`
rows at a time, each chunk mapped and captured in one transaction. Then the same file again,
which the stored content hash makes nearly free. The file is written before the run starts,
so the connector says `ready: renamed` (no run spent seeing it settle).

Naive baseline: what a quick script does: `pd.read_csv` of the whole file into one DataFrame,
then for each row map it and capture it in its own transaction (look up, insert, commit). It
is timed on the first `--naive-rows` rows (one transaction per row is slow), after loading the
whole file, so its memory figure is the whole file's. Each side runs in its own process so
each peak RSS is its own. Capture only: delivery is measured by `bench.delivery`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench.common import peak_rss_mb, result_line

MAPPING = {
    "object": "pos_sale",
    "stage_field": "type",
    "client_id_field": "ga_client_id",
    "currency": "EUR",
    "csv": {"record_id_column": "order_id", "time_column": "sold_at"},
    "rules": [
        {
            "name": "store purchase",
            "to": "purchase",
            "event": "purchase",
            "params": {
                "transaction_id": {"field": "order_id"},
                "value": {"field": "amount", "type": "number"},
            },
        }
    ],
}


def write_files(workdir: Path, rows: int) -> Path:
    """A config, a mapping and one export of `rows` purchases in the last 48 hours."""
    now = datetime.now(UTC)
    (workdir / "imports").mkdir(parents=True, exist_ok=True)
    (workdir / "secret").write_text("bench-secret\n")
    (workdir / "pos.yaml").write_text(yaml.safe_dump(MAPPING, sort_keys=False))
    config = {
        "ga4": {
            "measurement_id": "G-BENCH0001",
            "api_secret": {"file": "secret"},
            "endpoint": "http://127.0.0.1:9",
        },
        "state": {"url": "sqlite:///state.db"},
        "connectors": [
            {
                "name": "pos",
                "type": "csv",
                "mapping": "pos.yaml",
                "path": "imports/*.csv",
                "chunk_rows": 5000,
                "ready": "renamed",
            }
        ],
    }
    (workdir / "ga4sync.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with (workdir / "imports" / "export.csv").open("w", encoding="utf-8") as fh:
        fh.write("order_id,type,sold_at,amount,ga_client_id,note\n")
        for i in range(rows):
            at = now - timedelta(seconds=(i * 172_800) // max(rows, 1))
            fh.write(
                f"O-{i},purchase,{at.isoformat(timespec='seconds')},{i % 500}.50,"
                f'{100_000 + i}.{1_700_000_000 + i},"till {i % 9}, shop {i % 40}"\n'
            )
    return workdir / "ga4sync.yaml"


def run_ga4sync(config_path: str, out: Any) -> None:
    from ga4sync.pipeline.config import load_config
    from ga4sync.pipeline.engine import Engine
    from ga4sync.state.store import StateStore

    config = load_config(config_path)
    store = StateStore.open(config.state_url())
    engine = Engine(config, store)
    started = time.perf_counter()
    first = engine.capture("pos")
    took = time.perf_counter() - started
    started = time.perf_counter()
    second = engine.capture("pos")
    again = time.perf_counter() - started
    store.close()
    out.put(
        {
            "captured": first.captured,
            "status": first.status,
            "seconds": took,
            "again_captured": second.captured,
            "again_seconds": again,
            "rss": peak_rss_mb(),
        }
    )


def run_naive(config_path: str, sample: int, out: Any) -> None:
    from ga4sync.connectors.csv_time import TimeParser
    from ga4sync.core.model import StageTransition
    from ga4sync.mapping.load import load_mapping
    from ga4sync.pipeline.capture import row_for_transition
    from ga4sync.pipeline.config import load_config
    from ga4sync.state.store import StateStore

    config = load_config(config_path)
    store = StateStore.open(config.state_url().replace("state.db", "naive.db"))
    mapping = load_mapping(str(config.resolve("pos.yaml")))
    parser = TimeParser("sold_at", None, None, None)
    started = time.perf_counter()
    frame = pd.read_csv(config.resolve("imports/export.csv"), dtype=str, keep_default_na=False)
    captured = 0
    for record in frame.head(sample).to_dict("records"):
        t = StageTransition(
            connector="pos",
            object_type="pos_sale",
            record_id=record["order_id"],
            field="type",
            from_value=None,
            to_value=record["type"],
            changed_at=parser.parse(record["sold_at"]),
            detected_by="file",
            fields=record,
        )
        now = datetime.now(UTC)
        row = row_for_transition(t, mapping, now=now, scope="daemon")
        result = store.capture(
            connector="pos", object_type="pos_sale", rows=[row], watermark=None, now=now
        )
        captured += result.inserted
    took = time.perf_counter() - started
    store.close()
    out.put({"captured": captured, "seconds": took, "rss": peak_rss_mb()})


def _child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result: dict[str, Any] = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--naive-rows", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ga4sync-bench-csv-") as tmp:
        config = write_files(Path(tmp), args.rows)
        size_mb = (Path(tmp) / "imports" / "export.csv").stat().st_size / 1e6
        ours = _child(run_ga4sync, str(config))
        naive = _child(run_naive, str(config), min(args.naive_rows, args.rows))
    if ours["captured"] != args.rows or ours["again_captured"] != 0:
        raise SystemExit(f"ga4sync captured {ours} of {args.rows} rows; refusing to report")
    if naive["captured"] != min(args.naive_rows, args.rows):
        raise SystemExit(f"naive captured {naive}; refusing to report")
    ours_rps = ours["captured"] / ours["seconds"]
    naive_rps = naive["captured"] / naive["seconds"]
    print(f"file: {args.rows} rows, {size_mb:.1f} MB")
    print(
        f"ga4sync: {ours['captured']} rows in {ours['seconds']:.1f}s ({ours_rps:.0f}/s), "
        f"peak RSS {ours['rss']} MB; same file again: {ours['again_seconds']:.3f}s, 0 rows"
    )
    print(
        f"naive:   {naive['captured']} rows in {naive['seconds']:.1f}s ({naive_rps:.0f}/s), "
        f"peak RSS {naive['rss']} MB (whole file loaded)"
    )
    print(
        result_line(
            ratio=round(ours_rps / naive_rps, 1),
            ga4sync_rps=round(ours_rps),
            naive_rps=round(naive_rps, 1),
            rss_mb=ours["rss"],
            naive_rss_mb=naive["rss"],
            reimport_s=round(ours["again_seconds"], 3),
        )
    )


if __name__ == "__main__":
    main()
