"""A kept raw slot destroyed later (``settle_kept_slots``, after the hold's release) leaves
no copy of its wrapped capture key in the SQLite state files, -wal included (attack-4b):
the erasure procedure scrubs the state store after its own shreds, settling did not, so
the old ``capkeys/<batch>`` value (the wrapped key) stayed readable in the WAL."""

from __future__ import annotations

import json
from pathlib import Path

from archiver.keyspace import CAPTURE_KEYS_PREFIX
from tests.support.erasure import archive, erase_with_a_late_slot_kept


def _state_files(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp / "data").rglob("state.sqlite3*")
                    if p.is_file())  # fmt: skip


def test_settling_a_kept_slot_scrubs_its_wrapped_key_from_the_state_files(
    tmp_path: Path,
) -> None:
    with archive(None, tmp_path, "embedded") as (client, rt):
        hold_id, out = erase_with_a_late_slot_kept(client, rt)
        procedure = json.loads(rt.state.get(
            f"erasures/{out['subject']}/{out['erasure_id']}").value)  # fmt: skip
        (kept,) = procedure["late_slots_kept"]
        keys = json.loads(rt.state.get(CAPTURE_KEYS_PREFIX + kept["batch"]).value)["keys"]
        wrapped = keys[str(kept["slot"])].encode()
        assert wrapped in _state_files(tmp_path)

        rt.retention.registry.release(hold_id, by="legal")  # the release hook settles
        now_keys = json.loads(rt.state.get(CAPTURE_KEYS_PREFIX + kept["batch"]).value)
        assert str(kept["slot"]) not in now_keys["keys"]
        assert wrapped not in _state_files(tmp_path)
