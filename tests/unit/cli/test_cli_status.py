"""``archiver status`` on the embedded default (local folder store, SQLite): one screen of
health and the same as JSON with stable keys (issue 13)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archiver import cli
from archiver.ledger.entry import EntryKind
from archiver.settings import get_settings
from tests.support.apps import APP_SECRET, VERIFY_TOKEN, embedded_settings, running_app, sign
from tests.support.retention import log_entries

PNID = "106540352242922"

# The JSON form's keys: operators script against them, so they only ever grow.
KEYS: dict[str, set[str]] = {
    "backends": {"object_store", "state_store", "index"},
    "log": {"size", "checkpoint_size", "checkpoint_signed_at", "checkpoint_age_s"},
    "batches": {"pending", "stuck"},
    "index": {"lag", "backend"},
    "verify": {"last_run", "age_s", "tree_size", "sample", "findings", "pending", "kinds"},
    "holds": {"open", "ids"},
    "reviews": {"waiting"},
    "lock_modes": {"setting", "policies", "records"},
}
NUMBER_KEYS = {
    "connection",
    "connection_since",
    "connection_event",
    "history",
    "history_progress",
    "last_activity",
    "silent_s",
    "silent",
}


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: Path) -> Iterator[Path]:
    """An embedded archive holding Meta's genuine text message and PARTNER_REMOVED, a
    signed checkpoint and a verify sweep; the CLI pointed at the same folder."""
    data = tmp_path / "data"
    settings = embedded_settings(data, inline_workers=False)
    with running_app(settings) as (client, runtime):
        for name in ("messages_text.json", "account_update_partner_removed.json"):
            body = (shared / "fixtures" / "whatsapp" / name).read_bytes()
            answer = client.post(
                "/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sign(body)}
            )
            assert answer.status_code == 200, answer.text
        assert all(o.status == "done" for o in runtime.processor.sweep())
        runtime.follower.catch_up()
        runtime.checkpoints.sign_if_grown()
        runtime.proofs.verify(None)
        records = sum(1 for e in log_entries(runtime) if e.kind is EntryKind.RECORD)
        assert records >= 2
    for key, value in {
        "ARCHIVER_DATA_DIR": str(data),
        "ARCHIVER_APP_SECRETS": APP_SECRET,
        "ARCHIVER_VERIFY_TOKEN": VERIFY_TOKEN,
        "ARCHIVER_LOCK_MODE": "GOVERNANCE",
        "ARCHIVER_INLINE_WORKERS": "false",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield data
    get_settings.cache_clear()


def test_status_json_keys_are_stable_and_true(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert set(doc) == {"at", *KEYS, "coexistence"}
    for section, keys in KEYS.items():
        assert set(doc[section]) == keys, section
    assert all(b["ok"] for b in doc["backends"].values())
    assert doc["log"]["size"] > 0 and doc["log"]["checkpoint_signed_at"] is not None
    assert doc["batches"] == {"pending": 0, "stuck": 0}
    assert doc["index"]["lag"] >= 0
    verify = doc["verify"]
    assert verify["last_run"] is not None and verify["findings"] == 0 and verify["kinds"] == []
    number = doc["coexistence"][PNID]
    assert set(number) == NUMBER_KEYS
    assert number["connection"] == "disconnected"
    assert number["connection_event"] == "PARTNER_REMOVED"
    assert doc["holds"] == {"open": 0, "ids": []} and doc["reviews"] == {"waiting": 0}
    modes = doc["lock_modes"]
    assert modes["setting"] == "GOVERNANCE" and modes["policies"]["default"] == "GOVERNANCE"
    assert sum(modes["records"].values()) >= 2 and set(modes["records"]) == {"GOVERNANCE"}


def test_status_text_is_one_screen(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) <= 24  # one screen
    labels = [line.split()[0] for line in lines[1:] if not line.startswith(" ")]
    assert labels == [
        "backends", "log", "batches", "index", "verify", "coexistence", "holds", "reviews",
        "lock",
    ]  # fmt: skip
    assert "object_store=ok" in out and "index=ok" in out
    assert "0 pending, 0 stuck" in out
    assert "0 finding(s)" in out
    assert f"  {PNID}: DISCONNECTED since 2025-02-10T18:37:04Z (PARTNER_REMOVED)" in out
    assert "0 open" in out and "0 disposition review(s) waiting" in out
    assert "default=GOVERNANCE" in out
    print(out)  # shown with -s: the capture for the report
