"""The `runs` table: one row per capture, for `ga4sync status` and the daemon's health.

Each run records its owner (host, pid, process start) and a heartbeat that every committed
page moves (see CaptureWriter.capture), so a run killed without a word can be told from one
still working.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from ga4sync.state import schema as s
from ga4sync.state.errors import disk_full_is_clear
from ga4sync.state.owners import ProcessOwner
from ga4sync.state.sql import retry_on_disconnect
from sqlalchemy.engine import Engine


class RunLog:
    engine: Engine

    # -- runs ------------------------------------------------------------------------------
    @disk_full_is_clear
    @retry_on_disconnect
    def start_run(self, connector: str, kind: str, now: datetime) -> int:
        owner = ProcessOwner.current()
        with self.engine.begin() as conn:
            result = conn.execute(
                sa.insert(s.runs).values(
                    connector=connector,
                    kind=kind,
                    started_at=now,
                    status="running",
                    captured=0,
                    rejected=0,
                    api_calls=0,
                    owner_host=owner.host,
                    owner_pid=owner.pid,
                    owner_started=owner.started,
                    heartbeat_at=now,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    @disk_full_is_clear
    @retry_on_disconnect
    def finish_run(
        self,
        run_id: int,
        now: datetime,
        *,
        status: str,
        captured: int,
        rejected: int,
        api_calls: int,
        api_used: int | None,
        api_limit: int | None,
        error: str | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(s.runs)
                .where(s.runs.c.id == run_id)
                .values(
                    finished_at=now,
                    status=status,
                    captured=captured,
                    rejected=rejected,
                    api_calls=api_calls,
                    api_used=api_used,
                    api_limit=api_limit,
                    error=error,
                    warnings="\n".join(warnings) if warnings else None,
                )
            )
