"""`ga4.workers` stays the starting level (configs written before keep working); `max_workers`
and `min_workers` bound where the adaptive limit may go, and nonsense is refused naming the
field and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from ga4sync.pipeline.config import load_config
from ga4sync.pipeline.engine import Engine
from ga4sync.state.store import StateStore

from tests.test_config_refusals import base_config, refusal, write


def test_workers_alone_starts_there_and_may_grow_to_twice_it(tmp_path: Path) -> None:
    doc = base_config()
    doc["ga4"]["workers"] = 20
    ga4 = load_config(write(tmp_path, doc)).ga4
    assert (ga4.min_workers, ga4.workers, ga4.max_workers) == (1, 20, 40)
    doc["ga4"]["workers"] = 200
    assert load_config(write(tmp_path, doc)).ga4.max_workers == 256  # capped
    del doc["ga4"]["workers"]
    assert load_config(write(tmp_path, doc)).ga4.max_workers == 64  # 2 x the default 32


def test_the_engine_hands_the_range_to_delivery_and_sizes_the_pool(
    tmp_path: Path, store: StateStore
) -> None:
    doc = base_config()
    doc["ga4"].update({"workers": 8, "min_workers": 2, "max_workers": 12})
    engine = Engine(load_config(write(tmp_path, doc)), store)
    limit = engine.concurrency
    assert (limit.minimum, limit.limit, limit.maximum) == (2, 8, 12)
    settings = engine.delivery_settings
    assert (settings.min_workers, settings.workers, settings.max_workers) == (2, 8, 12)


@pytest.mark.parametrize(
    ("ga4", "message"),
    [
        (
            {"workers": 32, "max_workers": 16},
            "ga4.max_workers: max_workers (16) must be at least workers (32)",
        ),
        (
            {"workers": 4, "min_workers": 8},
            "ga4.min_workers: min_workers (8) must be at most workers (4)",
        ),
        ({"max_workers": 1000}, "ga4.max_workers"),
        ({"min_workers": 0}, "ga4.min_workers"),
    ],
)
def test_a_range_that_cannot_hold_is_refused(
    tmp_path: Path, ga4: dict[str, int], message: str
) -> None:
    doc = base_config()
    doc["ga4"].update(ga4)
    assert message in refusal(write(tmp_path, doc))


@pytest.mark.parametrize(
    ("ga4", "message"),
    [
        ({"workers": 0}, "ga4.workers: the number 0 is too small: at least 1"),
        ({"workers": 257}, "ga4.workers: the number 257 is too large: at most 256"),
        ({"workers": -3}, "ga4.workers: the number -3 is too small: at least 1"),
        ({"max_workers": 300}, "ga4.max_workers: the number 300 is too large: at most 256"),
        ({"min_workers": 0}, "ga4.min_workers: the number 0 is too small: at least 1"),
        # YAML `true` is not a number of requests (pydantic's lax mode read it as 1).
        ({"workers": True}, "ga4.workers: expected a whole number, got `true`"),
        ({"max_workers": True}, "ga4.max_workers: expected a whole number, got `true`"),
        ({"min_workers": False}, "ga4.min_workers: expected a whole number, got `false`"),
    ],
)
def test_an_out_of_range_or_true_false_worker_count_is_refused_in_words(
    tmp_path: Path, ga4: dict[str, object], message: str
) -> None:
    doc = base_config()
    doc["ga4"].update(ga4)
    path = write(tmp_path, doc)
    output = refusal(path)
    assert f"{path}:" in output
    assert message in output
    assert "Input should be" not in output  # pydantic's own words


def test_a_broken_range_is_not_called_a_value_type(tmp_path: Path) -> None:
    doc = base_config()
    doc["ga4"].update({"workers": 32, "max_workers": 16})
    output = refusal(write(tmp_path, doc))
    assert "must be at least workers (32)" in output
    assert "(value type)" not in output


def test_the_daemon_shows_its_starting_limit_before_its_first_delivery(
    tmp_path: Path, store: StateStore
) -> None:
    """/metrics said `ga4sync_ga4_concurrency_limit 0.0` until the first delivery ended
    (minutes with a long schedule): an alert on a low limit would fire at every start."""
    from ga4sync.ops.daemon import Daemon

    doc = base_config()
    doc["ga4"].update({"workers": 8, "max_workers": 12})
    daemon = Daemon(load_config(write(tmp_path, doc)), store)
    try:
        assert b"ga4sync_ga4_concurrency_limit 8.0" in daemon.metrics.render()
    finally:
        daemon.engine.close()
