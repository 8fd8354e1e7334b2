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

Before signing a larger tree, the signer appends a ``checkpoint`` entry naming the
previous signed checkpoint object (key, version id, SHA-256, size, retain-until,
``tree_size``), exactly once (``append(once_since=<its size>)``), so the tree it signs
names every checkpoint but itself. ``archiver verify`` then checks stored checkpoints like
any logged object: a deleted version (even without a delete marker), changed bytes or an
extra version is a finding; the newest one is named by the pointer (:meth:`pointer`). An
idle log gets no new checkpoint: the entry is appended only when the tree has grown.

Key rotation (:meth:`CheckpointSigner.rotate`): a ``checkpoint_key`` entry announcing the
new verifier key is appended, the tree containing it is signed with the OLD key, and
from then on the new key signs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from archiver.keyspace import checkpoint_key, checkpoint_pointer_key
from archiver.ledger import merkle
from archiver.ledger.checkpoint_format import Checkpoint, open_checkpoint, sign_checkpoint
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
        self.pointer_key = checkpoint_pointer_key(log.prefix)

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

    def _previous(
        self,
    ) -> tuple[SignedCheckpoint | None, dict[str, object] | None, str | None]:
        """The checkpoint the pointer names (read once, verified with the pointer's key),
        the pointer itself and its CAS token; Nones before the first checkpoint."""
        ptr, token = self._pointer()
        if ptr is None:
            return None, None, None
        key, vid, verifier = str(ptr["key"]), str(ptr["version_id"]), str(ptr["verifier"])
        text = self.objects.get(key, vid).decode()
        cp = open_checkpoint(text, [Verifier.from_key_text(verifier)], self.log.origin)
        return SignedCheckpoint(cp, text, key, vid, verifier), ptr, token

    def sign_if_grown(self) -> SignedCheckpoint | None:
        """Sign the current tree if it is larger than the last signed one. Safe to call
        from several processes at once; raises CheckpointRefused on an inconsistent tree."""
        while True:
            signed_prev, ptr, token = self._previous()
            prev = signed_prev.checkpoint if signed_prev is not None else None
            size, root = self.log.snapshot()
            if prev is not None and size <= prev.size:
                if size < prev.size or root != prev.root_hash:
                    raise CheckpointRefused(
                        f"log at size {size} is behind or forks the signed size {prev.size}"
                    )
                return None
            if size == 0:
                return None
            # Checked before the naming entry is appended (an append would build on a
            # forked state), and again for the tree that is signed.
            self._check_tree(prev, size, root)
            if signed_prev is not None and ptr is not None:
                self._name_previous(signed_prev, ptr)
                size, root = self.log.snapshot()
                self._check_tree(prev, size, root)
            signed = self._store(Checkpoint(self.log.origin, size, root))
            if self._advance(signed, token):
                return signed

    def _check_tree(self, prev: Checkpoint | None, size: int, root: bytes) -> None:
        if prev is not None:
            try:
                proof = self.log.consistency_proof(prev.size, size)
                merkle.verify_consistency(prev.size, size, prev.root_hash, root, proof)
            except ProofError as exc:
                raise CheckpointRefused(f"tree {size} inconsistent: {exc}") from exc
        if self.log.root_at(size) != root:
            raise CheckpointRefused(f"tiles at size {size} do not give the state's root")

    def pointer(self) -> tuple[str, str] | None:
        """``(key, version_id)`` of the latest signed checkpoint, without reading it (the
        one checkpoint the log cannot name yet; ``archiver verify`` checks it is there)."""
        ptr, _ = self._pointer()
        if ptr is None:
            return None
        return str(ptr["key"]), str(ptr["version_id"])

    def latest_info(self) -> dict[str, object] | None:
        """Size and ``signed_at`` of the latest signed checkpoint (for ``archiver status``),
        without reading the checkpoint object."""
        ptr, _ = self._pointer()
        if ptr is None:
            return None
        return {"size": ptr.get("size"), "signed_at": ptr.get("signed_at")}

    def _name_previous(self, prev: SignedCheckpoint, ptr: dict[str, object]) -> None:
        """Append the ``checkpoint`` entry of ``prev`` (the checkpoint ``ptr`` names),
        unless it is in the log already (an earlier attempt or a racing signer). Its bytes
        are the same on every attempt, which is what makes ``once_since`` find it."""
        key, vid, size = prev.key, prev.version_id, prev.checkpoint.size
        data = prev.note.encode()
        info = self.objects.stat(key, vid)
        signed_at = ptr.get("signed_at")
        when = (
            datetime.fromisoformat(str(signed_at))
            if signed_at
            else info.last_modified or datetime.fromtimestamp(0, UTC)
        )
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        entry = make_entry(
            EntryKind.CHECKPOINT,
            time=when,
            key=key,
            version_id=vid,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            retain_until=info.retention.retain_until if info.retention else None,
            tree_size=size,
        )
        self.log.append([entry.data], once_since=size)

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
            "signed_at": self.now().isoformat(),
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
        prev, ptr, _ = self._previous()
        if prev is not None and ptr is not None:  # named first: the announcement stays newest
            self._name_previous(prev, ptr)
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
        return self._previous()[0]
