"""Running the ``archiver`` command as a user would: a real subprocess on this checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.conftest import REPO


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m archiver.cli ARGS`` with ``env`` (the settings), from the repo root."""
    return subprocess.run(
        [sys.executable, "-m", "archiver.cli", *args],
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def findings(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON lines of ``verify --json``."""
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
