"""A kept raw slot destroyed later (``settle_kept_slots``, after the hold's release) leaves
no copy of its wrapped capture key in the SQLite state files, -wal included (attack-4b):
the erasure procedure scrubs the state store after its own shreds, settling did not, so
the old ``capkeys/<batch>`` value (the wrapped key) stayed readable in the WAL."""

from __future__ import annotations

import json
from pathlib import Path

from archiver.keyspace import CAPTURE_KEYS_PREFIX
from archiver.retention.common import resolve_subject
from archiver.retention.holds import HoldScope
from tests.support.erasure import ERASE, archive
from tests.support.retention import PHONE_NUMBER_ID, Msg, deliver, now

OTHER = "447700900078"


def _state_files(tmp: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp / "data").rglob("state.sqlite3*")
                    if p.is_file())  # fmt: skip


def test_settling_a_kept_slot_scrubs_its_wrapped_key_from_the_state_files(
    tmp_path: Path,
) -> None:
    with archive(None, tmp_path, "embedded") as (client, rt):
        deliver(client, rt, [Msg(OTHER, "before zqxother", now())])
        other = resolve_subject(rt.state, rt.pseudo, PHONE_NUMBER_ID, OTHER)
        hold_id = rt.retention.holds.place(HoldScope(subject=other), case_id=None, reason="r",
                                           by="legal", numbers=None)["id"]  # fmt: skip
        deliver(client, rt, [Msg(ERASE, "first zqxplanned", now())])
        svc = rt.retention.erasure

        def arrive(at: str) -> None:
            if at == "before:shred_keys":
                deliver(client, rt, [Msg(ERASE, "late zqxlate", now()),
                                     Msg(OTHER, "shared zqxtheirs", now())])

        svc._crash = arrive
        try:
            out = svc.erase(PHONE_NUMBER_ID, ERASE, by="dpo")
        finally:
            svc._crash = lambda _at: None
        assert out["capture_slots_kept"] == 1
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
