"""The serving GC settings hold while the app runs and are undone when it stops."""

from __future__ import annotations

import gc
from pathlib import Path

from archiver.api.gc_tuning import SERVING_THRESHOLDS, serving_gc
from tests.support.apps import embedded_settings, running_app


def test_thresholds_and_freeze_while_serving_then_restored(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert before != SERVING_THRESHOLDS
    with running_app(embedded_settings(tmp_path / "data")):
        assert gc.get_threshold() == SERVING_THRESHOLDS
        assert gc.get_freeze_count() > 0  # the runtime built at start-up is frozen
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_off_switch_leaves_python_defaults(tmp_path: Path) -> None:
    before = gc.get_threshold()
    with running_app(embedded_settings(tmp_path / "data", gc_tuning=False)):
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_restored_when_the_body_raises() -> None:
    before = gc.get_threshold()
    try:
        with serving_gc():
            raise RuntimeError("shutdown by error")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
