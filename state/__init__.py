"""The state store: outbox, watermarks, snapshots, runs (SQLite default, PostgreSQL replicas)."""

from ga4sync.state.store import ClaimedRow, OutboxRow, StateStore

__all__ = ["ClaimedRow", "OutboxRow", "StateStore"]
