"""Group commit of "request started" marks (send_marks.py) with many senders at once.

Each write wakes only the senders whose marks it wrote and hands the next write to one waiting
sender: every sender must still come back, with its own answer, however the writes group.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from ga4sync.core.clock import ManualClock
from ga4sync.core.model import Ga4Event, Identity, Status
from ga4sync.ga4.payload import group_key, stored_payload
from ga4sync.pipeline.send_marks import SendMarks
from ga4sync.state.errors import DatabaseError
from ga4sync.state.store import OutboxRow, StateStore

SENDERS = 24


def _rows(now_clock: ManualClock, n: int) -> list[OutboxRow]:
    now = now_clock.now()
    out = []
    for i in range(n):
        payload = stored_payload(Identity(client_id=f"{i}.1"), Ga4Event("e", {}, now))
        out.append(
            OutboxRow(
                key=f"k{i:03d}",
                connector="test",
                object_type="Opportunity",
                record_id=f"r{i}",
                field="StageName",
                from_value="A",
                to_value="B",
                changed_at=now,
                detected_by="history",
                status=Status.PENDING,
                rule="r",
                event_name="e",
                payload=payload,
                group_key=group_key(payload),
            )
        )
    return out


def _mark_all(marks: SendMarks, batches: list[tuple[list[str], str]]) -> list[object]:
    """Every batch marked from its own thread, all released at once."""
    answers: list[object] = [None] * len(batches)
    start = threading.Barrier(len(batches))

    def sender(i: int) -> None:
        start.wait(timeout=60)
        try:
            answers[i] = marks.mark(*batches[i])
        except DatabaseError as exc:
            answers[i] = exc

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a sender was never woken"
    return answers


def test_every_sender_gets_its_own_answer(store: StateStore) -> None:
    clock = ManualClock()
    rows = _rows(clock, SENDERS)
    store.capture(
        connector="test", object_type="Opportunity", rows=rows, watermark=None, now=clock.now()
    )
    claimed = store.claim_due(clock.now(), limit=SENDERS, lease=timedelta(minutes=5))
    token = claimed[0].claim_token
    # Every third batch names a claim that is not the rows' own: those must answer False.
    batches = [([r.key], token if i % 3 else "not-ours") for i, r in enumerate(claimed)]
    marks = SendMarks(store, clock)
    for _ in range(3):  # again: marks are idempotent, and the hand-over must not stick
        answers = _mark_all(marks, batches)
        assert answers == [bool(i % 3) for i in range(SENDERS)]
