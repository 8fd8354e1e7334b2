"""The key store: data keys per subject and per raw capture, wrapped by the KEK, kept in
the working-state store (``archiver.store.port.StateStore``). See docs/keys.md.

State layout (values are JSON)::

    keys/dk/<key_id>                        one data key: kind, owner, kek_id, wrapped key;
                                            after shredding a tombstone without key material
    keys/subject/<subject_id>               the subject's key ids, current key, protections
    keys/grant/<subject_id>/<capture_key>   capture key granted to the subject (an index row)
    keys/epoch                              a counter every destruction of key material
                                            raises first (the replicas' caches check it)

Every change returns an event dict for the caller to append to the Merkle log; this
module does not import the ledger. Subject ids are pseudonyms (never phone numbers):
they appear in state keys and events.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from archiver.keys.envelope import DataKey, KeyEncryptionKey, new_data_key
from archiver.keys.errors import KekError, KeyNotFound, KeyProtected, KeyShredded
from archiver.keyspace import (
    DATA_KEYS_PREFIX,
    KEYS_EPOCH_KEY,
    SUBJECT_KEYS_PREFIX,
    key_grant_key,
    key_grants_of,
)
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore

Event = dict[str, Any]
Guard = Callable[[str], None]

_ID = re.compile(r"^[A-Za-z0-9._:=-]{1,200}$")
_DK, _SUBJ = DATA_KEYS_PREFIX, SUBJECT_KEYS_PREFIX
_EPOCH = KEYS_EPOCH_KEY
_CAS_TRIES = 20
_CACHE_MAX = 100_000  # keys cached per process (a few MB); past it the cache starts over


class KeyEventKind(StrEnum):
    """Audit event names (``subject:action``, CONVENTIONS habit 7)."""

    CREATED = "key:created"
    CAPTURE_CREATED = "key:capture_created"
    SHREDDED = "key:shredded"
    PROTECTED = "key:protected"
    UNPROTECTED = "key:unprotected"
    REWRAPPED = "key:rewrapped"


@dataclass(frozen=True, slots=True)
class _Doc:
    data: dict[str, Any]
    token: str | None  # None: absent


def _check_id(what: str, value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{what} must match {_ID.pattern} (use the pseudonym, not a number)")
    return value


class KeyStore:
    """Data keys in working state. Raises KeysError subclasses, KekError, StoreError."""

    def __init__(
        self,
        state: StateStore,
        kek: KeyEncryptionKey,
        *,
        old_keks: Iterable[KeyEncryptionKey] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._state = state
        self._kek = kek
        self._keks = {k.kek_id: k for k in (*old_keks, kek)}
        self._now = clock or (lambda: datetime.now(UTC))
        # Key material never changes until destroyed, so sessions cache it (KeySession):
        # subject -> (current key, creator, created_at) and key id -> key, valid for
        # ``_epoch``, the value of ``keys/epoch`` when they were filled.
        self._cache_lock = threading.Lock()
        self._epoch: bytes | None = None
        self._subjects: dict[str, tuple[DataKey, str | None, str]] = {}
        self._keys: dict[str, DataKey] = {}

    # -- reading and writing JSON docs ------------------------------------------------
    def _read(self, key: str) -> _Doc:
        got = self._state.get(key)
        if got is None:
            return _Doc({}, None)
        return _Doc(json.loads(got.value), got.token)

    def _write(self, key: str, data: dict[str, Any], token: str | None) -> str:
        raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        if token is None:
            return self._state.put(key, raw, if_absent=True)
        return self._state.put(key, raw, if_match=token)

    def _update(self, key: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Read-modify-write with compare-and-swap, retried when another writer wins."""
        for _ in range(_CAS_TRIES):
            doc = self._read(key)
            try:
                self._write(key, change(dict(doc.data)), doc.token)
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"{key}: too much contention")

    def _event(self, kind: KeyEventKind, **fields: Any) -> Event:
        return {"kind": kind.value, "time": self._now().isoformat(), **fields}

    def _wrap_entry(self, dk: DataKey, **owner: Any) -> dict[str, Any]:
        return {
            "key_id": dk.key_id,
            "kek_id": self._kek.kek_id,
            "wrapped": base64.b64encode(self._kek.wrap(dk.secret)).decode(),
            "created_at": self._now().isoformat(),
            **owner,
        }

    def _unwrap(self, entry: dict[str, Any]) -> DataKey:
        kek = self._keks.get(entry["kek_id"])
        if kek is None:
            raise KekError(f"key {entry['key_id']} is wrapped by unknown KEK {entry['kek_id']}")
        return DataKey(entry["key_id"], kek.unwrap(base64.b64decode(entry["wrapped"])))

    # -- subject keys -----------------------------------------------------------------
    def get_or_create(
        self, subject_id: str, *, creator: str | None = None
    ) -> tuple[DataKey, Event | None]:
        """The subject's current data key, created on first use (event ``key:created``).
        After a shred the subject gets a fresh key: new data stays readable, old does not.

        ``creator`` names the unit of work that creates the key (a raw batch). If that same
        unit asks again (a retry after a crash that lost the event before it was logged),
        the creation event is returned again, with its original time, so that the key's
        creation still reaches the log; anyone else gets ``None`` for an existing key."""
        key, event, _creator, _created = self._get_or_create(subject_id, creator)
        return key, event

    def _get_or_create(
        self, subject_id: str, creator: str | None
    ) -> tuple[DataKey, Event | None, str | None, str]:
        """``get_or_create`` with the key's creator and creation time (for the cache)."""
        _check_id("subject_id", subject_id)
        for _ in range(_CAS_TRIES):
            doc = self._read(_SUBJ + subject_id)
            current = doc.data.get("current")
            if current:
                key_doc = self._read(_DK + current)
                key = self._key_of(current, key_doc)
                made_by, made_at = key_doc.data.get("creator"), str(key_doc.data["created_at"])
                return key, self._creation(subject_id, key, creator, made_by, made_at), (
                    made_by), made_at
            dk = new_data_key()
            owner: dict[str, Any] = {"kind": "subject", "subject": subject_id}
            if creator is not None:
                owner["creator"] = creator
            entry = self._wrap_entry(dk, **owner)
            self._write(_DK + dk.key_id, entry, None)
            data = doc.data or {"subject": subject_id, "key_ids": [], "protected": {}}
            data["current"] = dk.key_id
            data["key_ids"] = [*data.get("key_ids", []), dk.key_id]
            try:
                self._write(_SUBJ + subject_id, data, doc.token)
            except PreconditionFailed:
                # Another replica created (or changed) the subject first: drop ours, retry.
                self._state.delete(_DK + dk.key_id)
                continue
            event = self._event(KeyEventKind.CREATED, subject=subject_id, key_id=dk.key_id)
            return dk, event, creator, str(entry["created_at"])
        raise PreconditionFailed(f"subject {subject_id}: too much contention")

    def _creation(
        self, subject_id: str, key: DataKey, asking: str | None, creator: str | None, at: str
    ) -> Event | None:
        """The creation event again for the unit of work that created the key, else None."""
        if asking is None or creator != asking:
            return None
        event = self._event(KeyEventKind.CREATED, subject=subject_id, key_id=key.key_id)
        return {**event, "time": at}

    # -- the cache of sessions ----------------------------------------------------------
    def session(self) -> KeySession:
        """Keys for one unit of work (a raw batch, a range of the log), served from this
        process's cache of key material. One read of ``keys/epoch``: if any key was
        destroyed since the cache was filled (here or on another replica: destruction
        raises the epoch first), the cache is dropped. So a session never uses a key
        destroyed before it opened, exactly as if it had read the key store itself at its
        start; within the session a key stays usable, as it did when read once per batch."""
        got = self._state.get(_EPOCH)
        epoch = got.value if got is not None else b"0"
        with self._cache_lock:
            if epoch != self._epoch:
                self._forget_keys(epoch)
        return KeySession(self, epoch)

    def epoch(self) -> bytes:
        """The current ``keys/epoch``: a reader that saw the same value before and after
        using key material knows no destruction began in between (shred raises it first)."""
        got = self._state.get(_EPOCH)
        return got.value if got is not None else b"0"

    def _forget_keys(self, epoch: bytes | None) -> None:
        self._epoch = epoch
        self._subjects = {}
        self._keys = {}

    def _cached_subject(self, subject_id: str) -> tuple[DataKey, str | None, str] | None:
        with self._cache_lock:
            return self._subjects.get(subject_id)

    def _cached_key(self, key_id: str) -> DataKey | None:
        with self._cache_lock:
            return self._keys.get(key_id)

    def _remember(self, epoch: bytes, subject_id: str | None, key: DataKey,
                  creator: str | None = None, created_at: str = "") -> None:  # fmt: skip
        with self._cache_lock:
            if epoch != self._epoch:
                return  # a destruction since this session opened: keep nothing of it
            if len(self._keys) >= _CACHE_MAX:
                self._forget_keys(epoch)
            self._keys[key.key_id] = key
            if subject_id is not None:
                self._subjects[subject_id] = (key, creator, created_at)

    def _raise_epoch(self) -> None:
        """Before any key material is destroyed: every session opened from now on, in any
        process, drops its process's cache (``session``)."""
        with self._cache_lock:
            self._forget_keys(None)  # this process at once
        for _ in range(_CAS_TRIES):
            got = self._state.get(_EPOCH)
            value = str(int(got.value) + 1 if got is not None else 1).encode()
            try:
                if got is None:
                    self._state.put(_EPOCH, value, if_absent=True)
                else:
                    self._state.put(_EPOCH, value, if_match=got.token)
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"{_EPOCH}: too much contention")

    def get(self, key_id: str) -> DataKey:
        """Any data key by id. Raises KeyNotFound, KeyShredded."""
        return self._key_of(key_id, self._read(_DK + _check_id("key_id", key_id)))

    def _key_of(self, key_id: str, doc: _Doc) -> DataKey:
        if doc.token is None:
            raise KeyNotFound(f"no data key {key_id}")
        if doc.data.get("shredded_at"):
            raise KeyShredded(f"data key {key_id} was destroyed at {doc.data['shredded_at']}",
                              details={"key_id": key_id})
        return self._unwrap(doc.data)

    # -- capture keys -----------------------------------------------------------------
    def create_capture_key(
        self, capture_id: str, subject_ids: Iterable[str]
    ) -> tuple[DataKey, list[Event]]:
        """A fresh key for one raw capture, granted to every subject it mentions.
        Grants are written before the key, so a crash never leaves an ungranted key."""
        _check_id("capture_id", capture_id)
        subjects = sorted({_check_id("subject_id", s) for s in subject_ids})
        dk = new_data_key()
        for s in subjects:
            self._state.put(key_grant_key(s, dk.key_id),
                            json.dumps({"capture_id": capture_id}).encode())
        self._write(_DK + dk.key_id, self._wrap_entry(
            dk, kind="capture", capture_id=capture_id, subjects=subjects), None)
        return dk, [self._event(KeyEventKind.CAPTURE_CREATED, key_id=dk.key_id,
                                capture_id=capture_id, subjects=subjects)]

    def grant(self, key_id: str, subject_ids: Iterable[str]) -> None:
        """Grant an existing key to subjects: shredding any of them destroys it (a record
        that names several people, sealed under its raw slot's key). Idempotent."""
        _check_id("key_id", key_id)
        for s in sorted({_check_id("subject_id", s) for s in subject_ids}):
            self._state.put(key_grant_key(s, key_id), json.dumps({"key_id": key_id}).encode())

    def get_capture_key(self, key_id: str) -> DataKey:
        """Raises KeyNotFound (also for a subject key id), KeyShredded."""
        doc = self._read(_DK + _check_id("key_id", key_id))
        if doc.token is not None and doc.data.get("kind") != "capture":
            raise KeyNotFound(f"{key_id} is not a capture key")
        return self.get(key_id)

    def capture_keys_of(self, subject_id: str) -> list[str]:
        """Capture key ids granted to ``subject_id`` (the ``capture_key_grants`` index)."""
        prefix = key_grants_of(_check_id('subject_id', subject_id))
        return [k[len(prefix):] for k in self._state.list(prefix)]

    def subject_key_ids(self, subject_id: str) -> list[str]:
        """Every data key id the subject ever had (shredded ones included)."""
        doc = self._read(_SUBJ + _check_id("subject_id", subject_id))
        return [str(k) for k in doc.data.get("key_ids", [])]

    # -- protection -------------------------------------------------------------------
    def protect(self, subject_id: str, reason: str) -> Event:
        """Mark the subject's keys undestroyable (an obligation or a hold). Reasons stack:
        the subject stays protected until every reason is removed."""
        _check_id("subject_id", subject_id)
        since = self._now().isoformat()

        def change(d: dict[str, Any]) -> dict[str, Any]:
            d = d or {"subject": subject_id, "key_ids": [], "current": None}
            d["protected"] = {**d.get("protected", {}), reason: since}
            return d

        self._update(_SUBJ + subject_id, change)
        return self._event(KeyEventKind.PROTECTED, subject=subject_id, reason=reason)

    def unprotect(self, subject_id: str, reason: str) -> Event:
        _check_id("subject_id", subject_id)

        def change(d: dict[str, Any]) -> dict[str, Any]:
            if reason not in d.get("protected", {}):
                raise KeyNotFound(f"subject {subject_id} is not protected for {reason!r}")
            d["protected"] = {k: v for k, v in d["protected"].items() if k != reason}
            return d

        self._update(_SUBJ + subject_id, change)
        return self._event(KeyEventKind.UNPROTECTED, subject=subject_id, reason=reason)

    def protections(self, subject_id: str) -> dict[str, str]:
        """Reason -> since, for the subject (empty when unprotected)."""
        return dict(self._read(_SUBJ + _check_id("subject_id", subject_id)).data
                    .get("protected", {}))

    # -- shredding --------------------------------------------------------------------
    def shred(self, subject_id: str, *, guard: Guard) -> list[Event]:
        """Destroy every key of the subject and every capture key granted to it.

        ``guard(subject_id)`` is the caller's check (running obligations, holds) and raises
        to refuse. Independently, this store refuses (KeyProtected) when the subject, or
        another subject sharing one of its captures, is protected — nothing is destroyed
        then. Raises KeyNotFound when the store knows nothing of the subject."""
        _check_id("subject_id", subject_id)
        guard(subject_id)
        subj = self._read(_SUBJ + subject_id)
        grants = self.capture_keys_of(subject_id)
        if subj.token is None and not grants:
            raise KeyNotFound(f"no keys for subject {subject_id}")
        if subj.data.get("protected"):
            raise KeyProtected(f"subject {subject_id} is protected: "
                               f"{', '.join(sorted(subj.data['protected']))}",
                               details={"subject": subject_id})
        captures = {cid: self._read(_DK + cid) for cid in grants}
        for cid, doc in captures.items():
            for other in doc.data.get("subjects", []):
                if other != subject_id and self.protections(other):
                    raise KeyProtected(
                        f"capture key {cid} is shared with protected subject {other}",
                        details={"subject": subject_id, "capture_key": cid, "other": other})
        self._raise_epoch()  # before anything is destroyed: no cache keeps these keys
        if subj.token is not None:
            # Claim the subject first (CAS on the doc whose protection we checked), so a
            # protect() racing with us either lands before (we fail) or after (nothing left).
            marked = {**subj.data, "current": None, "shredded_at": self._now().isoformat()}
            self._write(_SUBJ + subject_id, marked, subj.token)
        events: list[Event] = []
        for cid, doc in captures.items():
            if doc.token is not None and not doc.data.get("shredded_at"):
                self._tombstone(cid, doc)
                events.append(self._event(KeyEventKind.SHREDDED, subject=subject_id,
                                          key_id=cid, kind_of_key="capture",
                                          capture_id=doc.data.get("capture_id")))
            for s in doc.data.get("subjects", [subject_id]):
                self._state.delete(key_grant_key(s, cid))
            self._state.delete(key_grant_key(subject_id, cid))
        for kid in subj.data.get("key_ids", []):
            doc = self._read(_DK + kid)
            if doc.token is not None and not doc.data.get("shredded_at"):
                self._tombstone(kid, doc)
                events.append(self._event(KeyEventKind.SHREDDED, subject=subject_id,
                                          key_id=kid, kind_of_key="subject"))
        return events

    def destroy(self, key_id: str) -> bool:
        """Replace one data key by its tombstone, whoever owns it: the replay of a logged
        ``key_shredded`` leaf after working state was restored from a backup (docs/keys.md).
        No protection check: the log says the key was already destroyed. True when this
        call destroyed it (False: absent or already a tombstone)."""
        for _ in range(_CAS_TRIES):
            doc = self._read(_DK + _check_id("key_id", key_id))
            if doc.token is None or doc.data.get("shredded_at"):
                return False
            self._raise_epoch()
            try:
                self._tombstone(key_id, doc)
                return True
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"{key_id}: too much contention")

    def _tombstone(self, key_id: str, doc: _Doc) -> None:
        """Replace the wrapped key by a tombstone: the key material leaves the store."""
        stone = {k: v for k, v in doc.data.items() if k not in ("wrapped", "kek_id")}
        stone["shredded_at"] = self._now().isoformat()
        self._write(_DK + key_id, stone, doc.token)

    # -- KEK rotation -----------------------------------------------------------------
    def rewrap_all(self, new_kek: KeyEncryptionKey) -> Event:
        """Re-wrap every live data key under ``new_kek`` and make it current. Resumable:
        keys already under ``new_kek`` are skipped. Old KEKs stay usable for this instance."""
        self._keks[new_kek.kek_id] = new_kek
        count, sources = 0, set()
        for key in list(self._state.list(_DK)):
            for _ in range(_CAS_TRIES):
                doc = self._read(key)
                if (doc.token is None or doc.data.get("shredded_at")
                        or doc.data["kek_id"] == new_kek.kek_id):
                    break
                secret = self._unwrap(doc.data).secret
                sources.add(doc.data["kek_id"])
                data = {**doc.data, "kek_id": new_kek.kek_id,
                        "wrapped": base64.b64encode(new_kek.wrap(secret)).decode()}
                try:
                    self._write(key, data, doc.token)
                except PreconditionFailed:
                    continue
                count += 1
                break
        self._kek = new_kek
        return self._event(KeyEventKind.REWRAPPED, count=count, from_kek_ids=sorted(sources),
                           to_kek_id=new_kek.kek_id)


class KeySession:
    """``KeyStore.session()``: the subject keys of one unit of work, cached per process
    (``SubjectKeys`` for the processor and the indexer). Creation and grants go to the
    store as always; only reads of existing, live key material are spared."""

    def __init__(self, store: KeyStore, epoch: bytes) -> None:
        self._store = store
        self._epoch = epoch

    @property
    def epoch(self) -> bytes:
        """``keys/epoch`` as this session read it when it opened: a reader that sees the
        same value after using the session's keys knows no destruction began meanwhile."""
        return self._epoch

    def get_or_create(
        self, subject_id: str, *, creator: str | None = None
    ) -> tuple[DataKey, Event | None]:
        cached = self._store._cached_subject(subject_id)
        if cached is not None:
            key, made_by, made_at = cached
            return key, self._store._creation(subject_id, key, creator, made_by, made_at)
        key, event, made_by, made_at = self._store._get_or_create(subject_id, creator)
        self._store._remember(self._epoch, subject_id, key, made_by, made_at)
        return key, event

    def get(self, key_id: str) -> DataKey:
        cached = self._store._cached_key(key_id)
        if cached is not None:
            return cached
        key = self._store.get(key_id)
        self._store._remember(self._epoch, None, key)
        return key

    def grant(self, key_id: str, subject_ids: Iterable[str]) -> None:
        self._store.grant(key_id, subject_ids)
