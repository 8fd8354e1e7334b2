"""A kept late slot of a procedure an earlier version finished (``late_slots_kept`` saved,
no ``erasures-kept/`` marker: the marker came with the fix of attack-3 F2) was neither
reported as residue nor ever destroyed after the upgrade: both read the markers only
(attack-4b). Residue reads the procedures themselves; the erasure-resume job marks such
a procedure once per process, so ``settle_kept_slots`` destroys the slot once its hold
is released."""

from __future__ import annotations

from pathlib import Path

from archiver.keyspace import ERASURES_KEPT_PREFIX
from archiver.retention.erasure import ErasureService
from archiver.retention.residue import erasure_residue
from archiver.runtime import Runtime
from tests.support.erasure import archive, erase_with_a_late_slot_kept, recoverable


def _slot_readable(rt: Runtime, needle: str) -> bool:
    return any(w.startswith("raw slot") for w in recoverable(rt, needle))


def test_a_kept_slot_without_its_marker_is_residue_and_settled_after_the_release(
    tmp_path: Path,
) -> None:
    with archive(None, tmp_path, "embedded") as (client, rt):
        hold_id, _out = erase_with_a_late_slot_kept(client, rt)
        svc = rt.retention.erasure
        assert _slot_readable(rt, "zqxlate")
        # The state an earlier version left: the procedure lists the kept slot, no marker.
        for marker in list(rt.state.list(ERASURES_KEPT_PREFIX)):
            rt.state.delete(marker)

        residue = erasure_residue(rt.log, rt.objects, rt.state, rt.index)
        assert len(residue) == 1 and "kept" in residue[0].message, residue

        # After the upgrade's restart (a new service: nothing checked yet in this process).
        fresh = ErasureService(
            objects=svc.objects, state=svc.state, log=svc.log, keys=svc.keys, index=svc.index,
            pseudo=svc.pseudo, policy=svc.policy, holds=svc.holds, lock_mode=svc.lock_mode,
            log_retention_days=svc.log_retention_days, reader=svc.reader, kek=svc.kek)
        assert fresh.resume_pending() == [] and _slot_readable(rt, "zqxlate")  # held
        rt.retention.registry.release(hold_id, by="legal")  # the release hook settles
        fresh.settle_kept_slots()
        assert not _slot_readable(rt, "zqxlate")
        assert not _slot_readable(rt, "zqxtheirs")
        assert erasure_residue(rt.log, rt.objects, rt.state, rt.index) == []
