"""Where the shared WhatsApp fixtures live (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXPECTATIONS = REPO / "tests" / "data" / "expectations"


def shared_dir() -> Path:
    return Path(os.environ.get("ARCHIVER_SHARED_DIR", REPO / ".." / "shared")).resolve()


def fixtures_dir() -> Path:
    return shared_dir() / "fixtures" / "whatsapp"


def webhook_fixtures() -> list[Path]:
    """Every webhook body: top level, alt_pywa/, signature/*.body.json (api/ are responses)."""
    root = fixtures_dir()
    if not root.is_dir():
        return []
    files = [p for p in root.glob("*.json") if p.name != "SOURCES.json"]
    files += root.glob("alt_pywa/*.json")
    files += root.glob("signature/*.body.json")
    return sorted(files)


def expectation_name(path: Path) -> str:
    return str(path.relative_to(fixtures_dir())).replace("/", "__")


@pytest.fixture(scope="session")
def fixtures_root() -> Path:
    root = fixtures_dir()
    if not root.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"WhatsApp fixtures missing at {root} (set ARCHIVER_SHARED_DIR)")
        pytest.skip(f"WhatsApp fixtures missing at {root}")
    return root
