"""Shared fixtures: one suite over both state backends, real sandbox servers on loopback."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from ga4sync.pipeline.config import Config, load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state.store import StateStore

PG_BASE = os.environ.get("GA4SYNC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may reach the internet: refuse any connection that is not to loopback."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not (str(host).startswith("127.") or host in ("::1", "localhost")):
            raise OSError(f"test tried to reach {host}: only loopback is allowed")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


def _pg_schema_url() -> tuple[str, str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{PG_BASE}?options=-csearch_path%3D{schema}", schema


def _drop_pg_schema(schema: str) -> None:
    engine = sa.create_engine(PG_BASE)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state database URL on each backend (PostgreSQL: a private schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    url, schema = _pg_schema_url()
    try:
        yield url
    finally:
        _drop_pg_schema(schema)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    s = StateStore.open(state_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxEnvironment]:
    """Salesforce (HTTPS) and GA4 sandboxes with a clock 20 minutes behind real time."""
    env = SandboxEnvironment(tmp_path / "sandbox")
    env.clock.advance(-timedelta(minutes=20))
    env.start()
    try:
        yield env
    finally:
        env.stop()


EngineFactory = Callable[..., tuple[Engine, Config]]


@pytest.fixture
def make_engine(sandbox: SandboxEnvironment, state_url: str) -> Iterator[EngineFactory]:
    made: list[Engine] = []

    def factory(**config_kwargs: object) -> tuple[Engine, Config]:
        config = load_config(sandbox.write_config(state_url=state_url, **config_kwargs))
        engine = Engine(config, StateStore.open(config.state_url()))
        made.append(engine)
        return engine, config

    yield factory
    for engine in made:
        engine.close()
        engine.store.close()
