"""Every command on a state database that is empty, damaged, not a database or unreachable:
one `error:` line a person can act on, the documented exit code, no traceback, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from ga4sync.cli import main
from ga4sync.pipeline.config import load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.sandbox.runner import SandboxEnvironment
from ga4sync.state import schema
from ga4sync.state.errors import describe
from ga4sync.state.store import StateStore

COMMANDS = [
    ["status"],
    ["status", "--format", "json"],
    ["outbox", "list"],
    ["outbox", "list", "--status", "unknown", "--format", "json"],
    ["outbox", "show", "0123456789abcdef"],
    ["outbox", "resend", "0123456789abcdef"],
    ["outbox", "discard", "--status", "unknown", "--reason", "checked"],
    ["state", "prune", "--older-than", "30d"],
    ["report", "--from", "2026-11-01", "--to", "2026-11-02", "--out", "{tmp}/report.html"],
    ["backfill", "--connector", "salesforce", "--from", "2026-11-01", "--to", "2026-11-02"],
    ["backfill", "--connector", "salesforce", "--from", "2026-11-01", "--to", "2026-11-02"]
    + ["--dry-run"],
    ["run"],
    ["daemon"],
]


def cli(config: Path, args: list[str], tmp_path: Path) -> Result:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    return CliRunner().invoke(main, ["--config", str(config), *argv])


def assert_clean_error(result: Result, code: int, *words: str) -> None:
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out and "sqlalche.me" not in out, out
    assert not isinstance(result.exception, sa.exc.SQLAlchemyError), out
    assert out.startswith("error: "), out
    for word in words:
        assert word in out, out


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_a_store_with_a_dropped_table_is_refused_by_name(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path, args: list[str]
) -> None:
    StateStore.open(state_url).close()
    engine = sa.create_engine(state_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE outbox"))
    engine.dispose()
    config = sandbox.write_config(state_url=state_url)
    result = cli(config, args, tmp_path)
    if "--dry-run" in args:  # reads the outbox only: "nothing captured yet" is the truth
        assert result.exit_code == 0, result.output
        assert "already in outbox 0" in result.output
        return
    assert_clean_error(result, 2, "table(s) outbox are missing", "Restore it from a backup")
    assert not (tmp_path / "report.html").exists()
    assert sandbox.ga4.events() == []


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(bytes(range(256)) * 64)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    config = sandbox.write_config(state_url=f"sqlite:///{path}")
    for args in COMMANDS:
        result = cli(config, args, tmp_path)
        assert_clean_error(result, 2, "file is not a database", str(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sandbox.ga4.events() == []


def test_an_unreachable_postgres_is_exit_1_and_hides_the_password(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/test"
    config = sandbox.write_config(state_url=url)
    for args in COMMANDS:
        result = cli(config, args, tmp_path)
        assert_clean_error(result, 1, "is not reachable", "Connection refused")
        assert "s3cret-pw" not in result.output


def test_a_read_only_sqlite_database_is_a_clean_error(
    sandbox: SandboxEnvironment, tmp_path: Path
) -> None:
    """SQLite opened read-only (as on a read-only volume): the first write is refused."""
    path = tmp_path / "state.db"
    StateStore.open(f"sqlite:///{path}").close()
    store = StateStore.open(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(sa.exc.OperationalError) as raised:
            store.start_run("salesforce", "run", datetime.now(UTC))
    finally:
        store.close()
    error = describe(raised.value, f"sqlite:///{path}")
    assert error.exit_code == 2 and "readonly database" in str(error)


def test_every_read_command_on_an_empty_store(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    StateStore.open(state_url).close()  # made by a run that found nothing yet
    config = sandbox.write_config(state_url=state_url)
    status = cli(config, ["status", "--format", "json"], tmp_path)
    assert status.exit_code == 0, status.output
    doc = json.loads(status.output)
    assert doc["connectors"][0]["name"] == "salesforce"
    listed = cli(config, ["outbox", "list", "--format", "json"], tmp_path)
    assert listed.exit_code == 1 and json.loads(listed.output) == []
    table = cli(config, ["outbox", "list"], tmp_path)
    assert table.exit_code == 1 and "Outbox (0 rows)" in table.output
    shown = cli(config, ["outbox", "show", "0123456789abcdef"], tmp_path)
    assert_clean_error(shown, 1, "no outbox row has this key")
    pruned = cli(config, ["state", "prune", "--older-than", "30d"], tmp_path)
    assert pruned.exit_code == 0 and "deleted 0 rows" in pruned.output  # nothing to prune
    report = cli(config, COMMANDS[8], tmp_path)
    assert report.exit_code == 0 and (tmp_path / "report.html").exists()


def test_a_newer_schema_is_refused_by_every_command(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    store = StateStore.open(state_url)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(schema.schema_version).values(version=schema.SCHEMA_VERSION + 1))
    store.close()
    config = sandbox.write_config(state_url=state_url)
    for args in COMMANDS:
        if "--dry-run" in args:
            continue  # reads outbox keys only; the newer schema still has them
        result = cli(config, args, tmp_path)
        assert_clean_error(result, 2, "upgrade ga4sync")


def test_demo_never_writes_to_the_deployed_state_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GA4SYNC_STATE_URL is set where ga4sync is deployed; the demo's made-up transitions
    must stay in the demo's own folder."""
    deployed = tmp_path / "production.db"
    monkeypatch.setenv("GA4SYNC_STATE_URL", f"sqlite:///{deployed}")
    keep = tmp_path / "demo"
    result = CliRunner().invoke(
        main, ["demo", "--records", "6", "--seed", "3", "--keep", str(keep)]
    )
    assert result.exit_code == 0, result.output
    assert not deployed.exists()
    assert (keep / "ga4sync-demo.db").exists()


READ_ONLY_COMMANDS = [
    ["status"],
    ["status", "--format", "json"],
    ["outbox", "list"],
    ["outbox", "list", "--format", "json"],
    ["outbox", "show", "0123456789abcdef"],
    ["report", "--from", "2026-11-01", "--to", "2026-11-02", "--out", "{tmp}/report.html"],
]


def _table_names(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=lambda a: " ".join(a[:3]))
def test_read_only_commands_on_a_new_store_say_there_is_no_state_and_create_nothing(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path, args: list[str]
) -> None:
    """A new path is most often a typo in state.url: an empty database there would hide it."""
    config = sandbox.write_config(state_url=state_url)
    result = cli(config, args, tmp_path)
    assert_clean_error(result, 1, "there is no state yet", "`ga4sync run` creates it")
    if state_url.startswith("sqlite:///"):
        path = Path(state_url[len("sqlite:///") :])
        assert not path.exists() and list(path.parent.glob("state.db*")) == []
    else:
        assert _table_names(state_url) == []
    assert not (tmp_path / "report.html").exists()


NOT_PERSISTENT = ["sqlite:///", "sqlite://", "sqlite:///:memory:"]


@pytest.mark.parametrize("url", NOT_PERSISTENT)
@pytest.mark.parametrize("args", [["run"], ["status"], ["outbox", "list"], ["daemon"]])
def test_a_store_that_keeps_nothing_is_refused_in_one_line(
    sandbox: SandboxEnvironment, tmp_path: Path, url: str, args: list[str]
) -> None:
    """`sqlite:///` is what an unset template variable leaves: every run would send again."""
    config = sandbox.write_config(state_url=url)
    result = cli(config, args, tmp_path)
    assert_clean_error(result, 2, "keeps no state", "every run would send everything again")
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert sandbox.ga4.events() == []


def test_the_environment_variable_cannot_point_at_a_store_that_keeps_nothing(
    sandbox: SandboxEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GA4SYNC_STATE_URL", "sqlite:///")
    config = sandbox.write_config(state_url=f"sqlite:///{tmp_path / 'state.db'}")
    result = cli(config, ["run"], tmp_path)
    assert_clean_error(result, 2, "keeps no state")
    assert sandbox.ga4.events() == []


def _populated(sandbox: SandboxEnvironment, state_url: str, tmp_path: Path) -> tuple[Path, str]:
    """A store with one sent transition, by a real run; returns the config and the row key."""
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    oid = data.create_opportunity(
        now - timedelta(hours=2), stage="Prospecting", GA_Client_ID__c="555.1"
    )
    data.move_opportunity(oid, "Closed Won", now - timedelta(hours=1))
    config = sandbox.write_config(state_url=state_url)
    assert cli(config, ["run"], tmp_path).exit_code == 0
    with StateStore.open(state_url) as store:
        (row,) = store.list_outbox(statuses=["sent"])
    return config, row.key


def _read_only_results(config: Path, key: str, url: str, tmp_path: Path) -> list[Result]:
    today = datetime.now(UTC).date() + timedelta(days=1)
    commands = [
        ["status", "--format", "json"],
        ["outbox", "list", "--format", "json"],
        ["outbox", "show", key[:12]],
        ["report", "--from", str(today - timedelta(days=2)), "--to", str(today)]
        + ["--out", "{tmp}/report.html"],
    ]
    env = {"GA4SYNC_STATE_URL": url}
    return [
        CliRunner(env=env).invoke(main, ["--config", str(config), *_argv(args, tmp_path)])
        for args in commands
    ]


def _argv(args: list[str], tmp_path: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp_path)) for a in args]


def _assert_read_only_commands_work(results: list[Result], key: str, tmp_path: Path) -> None:
    status, listed, shown, report = results
    for result in results:
        assert result.exit_code == 0, result.output
    assert json.loads(status.output)["connectors"][0]["last_run"]["result"] == "ok"
    assert key in [r["key"] for r in json.loads(listed.output)]
    assert f"transition {key}" in shown.output
    assert "sent 1" in report.output and (tmp_path / "report.html").exists()


def test_read_only_commands_work_with_a_select_only_postgresql_role(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    if not state_url.startswith("postgresql"):
        pytest.skip("roles are PostgreSQL's; the SQLite case is the read-only file below")
    config, key = _populated(sandbox, state_url, tmp_path)
    role = f"ro_{uuid.uuid4().hex[:10]}"
    schema_name = state_url.rsplit("%3D", 1)[1]
    admin = sa.create_engine(state_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA "{schema_name}" TO {role}'))
        conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema_name}" TO {role}'))
    try:
        url = state_url.replace("postgres@", f"{role}@")
        results = _read_only_results(config, key, url, tmp_path)
        _assert_read_only_commands_work(results, key, tmp_path)
        run = CliRunner(env={"GA4SYNC_STATE_URL": url}).invoke(
            main, ["--config", str(config), "run"]
        )
        assert_clean_error(run, 2, "permission denied")  # writing is still refused, clearly
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()


def test_read_only_commands_work_on_a_read_only_sqlite_file_and_folder(
    sandbox: SandboxEnvironment, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """File mode 0444 in a folder mode 0555. root ignores modes, so as root the commands run
    again in a forked child that dropped to `nobody` (after a first pass as root has loaded
    every module the commands need: the interpreter's own files are not readable to nobody)."""
    shared = Path(tempfile.mkdtemp(prefix="ga4sync-ro-"))  # tmp_path is not nobody's to read
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o755)
    folder = shared / "ro"
    folder.mkdir()
    url = f"sqlite:///{folder / 'state.db'}"
    written, key = _populated(sandbox, url, tmp_path)
    config = shared / "ga4sync.yaml"
    config.write_text(written.read_text())
    config.chmod(0o644)
    for path in folder.iterdir():
        path.chmod(0o444)
    folder.chmod(0o555)
    digest = hashlib.sha256((folder / "state.db").read_bytes()).hexdigest()
    try:
        results = [_invoke(config, url, args) for args in _reader_args(key)]
        if os.geteuid() == 0:
            results = _as_nobody(lambda: [_invoke(config, url, a) for a in _reader_args(key)])
    finally:
        folder.chmod(0o755)
    for code, output in results:
        assert code == 0, output
    assert json.loads(results[0][1])["connectors"][0]["last_run"]["result"] == "ok"
    assert key in [r["key"] for r in json.loads(results[1][1])]
    assert f"transition {key}" in results[2][1]
    assert hashlib.sha256((folder / "state.db").read_bytes()).hexdigest() == digest


def _reader_args(key: str) -> list[list[str]]:
    return [
        ["status", "--format", "json"],
        ["outbox", "list", "--format", "json"],
        ["outbox", "show", key[:12]],
    ]


def _invoke(config: Path, url: str, args: list[str]) -> tuple[int, str]:
    result = CliRunner(env={"GA4SYNC_STATE_URL": url}).invoke(
        main, ["--config", str(config), *args]
    )
    failure = "" if result.exit_code == 0 else repr(result.exception)
    return result.exit_code, result.output + failure


def _as_nobody(work: Callable[[], list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """Run `work` in a forked child as uid/gid 65534; its results come back as JSON."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with os.fdopen(write_end, "w") as out:
                json.dump(work(), out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as incoming:
        text = incoming.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0 and text, "the unprivileged child failed"
    return [(int(code), str(output)) for code, output in json.loads(text)]


def _deals(sandbox: SandboxEnvironment, count: int) -> None:
    data = sandbox.salesforce.data
    now = sandbox.clock.now()
    for i in range(count):
        oid = data.create_opportunity(
            now - timedelta(hours=3), stage="Prospecting", GA_Client_ID__c=f"{i}.1"
        )
        data.move_opportunity(oid, "Closed Won", now - timedelta(hours=1))


def test_a_full_disk_during_capture_says_so_in_one_line_on_postgresql(
    sandbox: SandboxEnvironment, state_url: str, tmp_path: Path
) -> None:
    """PostgreSQL answers `disk_full` (SQLSTATE 53100) to the page's INSERT: here a trigger
    raises it, over the wire, as the server would when its disk is full."""
    if not state_url.startswith("postgresql"):
        pytest.skip("the SQLite case fills a size-capped database below")
    StateStore.open(state_url).close()
    engine = sa.create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE FUNCTION disk_is_full() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
                "'could not extend file \"base/16384/2619\": No space left on device' "
                "USING ERRCODE = 'disk_full'; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER disk_full BEFORE INSERT ON outbox "
                "FOR EACH ROW EXECUTE FUNCTION disk_is_full()"
            )
        )
    engine.dispose()
    _deals(sandbox, 3)
    result = cli(sandbox.write_config(state_url=state_url), ["run"], tmp_path)
    assert result.exit_code == 1, result.output
    assert "out of disk space" in result.output and "free space" in result.output
    assert "Traceback" not in result.output and "report it" not in result.output
    assert sandbox.ga4.events() == []


def test_a_full_disk_during_capture_is_a_clear_error_on_sqlite(
    sandbox: SandboxEnvironment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite's `database or disk is full`, from a database capped at its current size."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore.open(url)
    with store.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    store.engine.dispose()

    def capped(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={pages + 1}")

    sa.event.listen(store.engine, "connect", capped)
    _deals(sandbox, 300)
    config = load_config(sandbox.write_config(state_url=url))
    engine = Engine(config, store)
    try:
        report = engine.capture("salesforce")
    finally:
        engine.close()
        store.close()
    assert report.status == "failed"
    assert report.error is not None and "out of disk space" in report.error
    assert "database or disk is full" in report.error and "report it" not in report.error
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    with StateStore.open(url) as reopened:
        assert reopened.count_by_status() == {}  # the page was rolled back whole


def test_a_disk_full_error_from_postgresql_is_described_as_such(state_url: str) -> None:
    if not state_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's SQLSTATE")
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.OperationalError) as raised:
            conn.execute(sa.text("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '53100'; END $$"))
    finally:
        engine.dispose()
    error = describe(raised.value, state_url)
    assert error.exit_code == 1 and "out of disk space" in str(error)
