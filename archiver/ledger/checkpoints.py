"""Signing checkpoints of the proof log (C2SP tlog-checkpoint as a signed note).

Each signed checkpoint is kept WORM in the evidence store at
``<prefix>checkpoint/<size as 20 digits>`` (zero-padded so a lexical listing is in size
order) and the latest one is pointed to from the StateStore key ``<prefix>checkpoint``
(``{"size", "key", "version_id", "verifier"}``), advanced by compare-and-swap.

Before signing, the signer proves the new tree consistent with the previous signed one
(RFC 6962 §2.1.2 proof read from the tiles, checked with the verification function); a
failure raises :class:`CheckpointRefused`. Two signers racing for the same size write the
same key: the loser finds the object present and adopts it (Ed25519 signatures are
deterministic, so same key + same body give the same bytes anyway).

Key rotation (:meth:`CheckpointSigner.rotate`): a ``checkpoint_key`` entry announcing the
new verifier key is appended, the tree containing it is signed with the OLD key, and
from then on the new key signs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from archiver.ledger import merkle
from archiver.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.errors import CheckpointRefused, LogCorrupted, ProofError
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import Signer, Verifier
from archiver.store.errors import ObjectExists, PreconditionFailed
from archiver.store.port import ObjectStore, StateStore


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str  # the signed note text
    key: str  # object key in the evidence store
    version_id: str
    verifier: str  # verifier key text that signed it


def checkpoint_key(prefix: str, size: int) -> str:
    return f"{prefix}checkpoint/{size:020d}"


class CheckpointSigner:
    def __init__(
        self,
        log: TransparencyLog,
        signer_key: Signer,
        objects: ObjectStore,
        state: StateStore,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.log = log
        self.signer = signer_key
        self.objects = objects
        self.state = state
        self.now = now
        self.pointer_key = f"{log.prefix}checkpoint"

    def _pointer(self) -> tuple[dict[str, object] | None, str | None]:
        sv = self.state.get(self.pointer_key)
        if sv is None:
            return None, None
        return json.loads(sv.value), sv.token

    def latest(self) -> str | None:
        """Latest signed checkpoint note text, or None before the first."""
        ptr, _ = self._pointer()
        if ptr is None:
            return None
        return self.objects.get(str(ptr["key"]), str(ptr["version_id"])).decode()

    def _previous(self) -> tuple[Checkpoint | None, dict[str, object] | None, str | None]:
        ptr, token = self._pointer()
        if ptr is None:
            return None, None, None
        text = self.objects.get(str(ptr["key"]), str(ptr["version_id"])).decode()
        verifier = Verifier.from_key_text(str(ptr["verifier"]))
        return open_checkpoint(text, [verifier], self.log.origin), ptr, token

    def sign_if_grown(self) -> SignedCheckpoint | None:
        """Sign the current tree if it is larger than the last signed one. Safe to call
        from several processes at once; raises CheckpointRefused on an inconsistent tree."""
        while True:
            prev, _, token = self._previous()
            size, root = self.log.snapshot()
            if prev is not None and size <= prev.size:
                if size < prev.size or root != prev.root_hash:
                    raise CheckpointRefused(
                        f"log at size {size} is behind or forks the signed size {prev.size}"
                    )
                return None
            if size == 0:
                return None
            if prev is not None:
                try:
                    proof = self.log.consistency_proof(prev.size, size)
                    merkle.verify_consistency(prev.size, size, prev.root_hash, root, proof)
                except ProofError as exc:
                    raise CheckpointRefused(f"tree {size} inconsistent: {exc}") from exc
            if self.log.root_at(size) != root:
                raise CheckpointRefused(f"tiles at size {size} do not give the state's root")
            signed = self._store(Checkpoint(self.log.origin, size, root))
            if self._advance(signed, token):
                return signed

    def _store(self, cp: Checkpoint) -> SignedCheckpoint:
        key = checkpoint_key(self.log.prefix, cp.size)
        text = sign_checkpoint(cp, [self.signer])
        try:
            vid = self.objects.put(
                key,
                text.encode(),
                retention=self.log.retention_for_log(),
                content_type="text/plain",
            ).version_id
        except ObjectExists:
            # A racing signer stored this size first; adopt theirs if it verifies.
            versions = [
                v
                for v in self.objects.list_versions(key)
                if v.key == key and not v.is_delete_marker
            ]
            if not versions:
                raise LogCorrupted(f"{key} exists but has no readable version") from None
            vid = versions[0].version_id
            text = self.objects.get(key, vid).decode()
            if open_checkpoint(text, [self.signer.verifier], self.log.origin) != cp:
                raise LogCorrupted(f"{key} holds a different checkpoint") from None
        return SignedCheckpoint(cp, text, key, vid, self.signer.verifier.key_text)

    def _advance(self, signed: SignedCheckpoint, token: str | None) -> bool:
        ptr = {
            "size": signed.checkpoint.size,
            "key": signed.key,
            "version_id": signed.version_id,
            "verifier": signed.verifier,
        }
        raw = json.dumps(ptr, sort_keys=True).encode()
        try:
            if token is None:
                self.state.put(self.pointer_key, raw, if_absent=True)
            else:
                self.state.put(self.pointer_key, raw, if_match=token)
        except PreconditionFailed:
            return False  # someone else advanced it; re-read and re-decide
        return True

    def rotate(self, new_key: Signer) -> SignedCheckpoint:
        """Announce ``new_key`` in the log, sign that tree with the current key, then switch."""
        entry = make_entry(
            EntryKind.CHECKPOINT_KEY,
            time=self.now(),
            verifier_key=new_key.verifier.key_text,
            previous_key=self.signer.verifier.key_text,
        )
        self.log.append([entry.data])
        signed = self.sign_if_grown() or self.latest_signed()
        assert signed is not None  # the log just grew, so some checkpoint exists
        self.signer = new_key
        return signed

    def latest_signed(self) -> SignedCheckpoint | None:
        """The latest signed checkpoint, verified with the key the pointer names."""
        prev, ptr, _ = self._previous()
        if prev is None or ptr is None:
            return None
        key, vid = str(ptr["key"]), str(ptr["version_id"])
        text = self.objects.get(key, vid).decode()
        return SignedCheckpoint(prev, text, key, vid, str(ptr["verifier"]))
