"""Identity resolution that converges whatever the order Meta's webhooks arrive in.

A contact is named by several aliases (``wa:<digits>``, ``bsuid:…``, ``parent:…``, a
new number after ``user_changed_number``; ``archiver.subjects.aliases``). Each subject
id is a pseudonym (``s_…``) with its own data key. When a Meta payload names two aliases
that so far led to different subjects, the two subjects are **merged**: a union-find over
subject ids kept in working state. Nothing is rewritten: records keep the subject id
they were sealed under (both keys stay), and readers resolve through the union-find.

State layout (all write-once, so a positive read may be cached for good)::

    subjects/alias/<alias pseudonym>        subject id the alias was first registered to
    subjects/merged/<subject>               {"into", "at", "by", "business"}: the
                                            ``merged_into`` pointer of a merged subject
    subjects/children/<winner>/<subject>    reverse index of the pointers (written first;
                                            counts only when the pointer agrees)
    subjects/epoch                          a counter raised after every merge pointer

"No pointer" answers are not write-once. A session (:meth:`Identities.session`, one raw
batch of the processor) reads ``subjects/epoch`` once and shares them with the sessions
of its process for as long as the counter stays the same: a merge raises it after its
pointer is written (and again on a retry of the merging batch, which finds its pointers),
so a session opened after a merge completed never trusts a "no pointer" read before it.

A pointer always points to a *smaller* subject id, so there is no cycle, and the
canonical representative of a person is the smallest subject id of its class, whatever
the order of the merges. Merges are made only by the processor from Meta's own payloads
(webhooks, Graph answers in the send proxy's capture), never from a caller's request;
each is logged as a ``subject_merged`` leaf in the merging batch's own append (``by`` =
the batch id, so a retry after a crash finds its pointers and logs them again).

Raises StoreError subclasses (``PreconditionFailed`` under endless contention).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.keyspace import (
    ALIAS_PREFIX,
    MERGED_PREFIX,
    SUBJECTS_EPOCH_KEY,
    child_key,
    children_of,
)
from archiver.ledger.entry import EntryKind, make_entry
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore
from archiver.subjects.aliases import contact_aliases

_TRIES = 20
_ROOTS_MAX = 200_000  # "no pointer" answers remembered per process before starting over


class _RootMemory:
    """Subjects read as having no merge pointer, valid while ``subjects/epoch`` reads
    ``epoch`` (shared by the sessions of one process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.epoch: bytes | None = None
        self.roots: set[str] = set()


@dataclass(frozen=True, slots=True)
class Merge:
    """``subject`` now resolves to ``into`` (the smaller id); made by batch ``by``."""

    subject: str
    into: str
    at: datetime
    by: str | None
    business: str


class Identities:
    """The alias registry and the union-find of subjects over one working-state store.

    Positive reads (an alias's subject, a merge pointer) never change and are cached;
    "no pointer" is cached only until :meth:`fresh` (one batch of the processor)."""

    def __init__(
        self,
        state: StateStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        _aliases: dict[str, str] | None = None,
        _parents: dict[str, dict[str, Any]] | None = None,
        _memory: _RootMemory | None = None,
    ) -> None:
        self.state = state
        self.clock = clock
        self._aliases = _aliases if _aliases is not None else {}
        self._parents = _parents if _parents is not None else {}
        self._roots: set[str] = set()  # known to have no pointer (this session only)
        # Every subject that had a pointer, listed (None: not known); see ``fresh``.
        self._pointers: frozenset[str] | None = None
        self._memory = _memory if _memory is not None else _RootMemory()
        self._epoch: bytes | None = None  # a session's ``subjects/epoch`` (``session``)
        self._raised = False  # this session raised the epoch already

    def fresh(self, roots: Iterable[str] = (), pointers: Iterable[str] | None = None) -> Identities:
        """The same caches of write-once values, without the "no pointer" answers, or
        with ``roots`` as those (subjects a caller knows had no pointer as of a point it
        can vouch for: the index follower, which sees every merge's leaf). ``pointers``:
        every subject that had a pointer as of such a point (a listing of them), so any
        other subject is a root without a read."""
        out = Identities(
            self.state, clock=self.clock, _aliases=self._aliases, _parents=self._parents,
            _memory=self._memory,
        )
        out._roots = set(roots)
        out._pointers = frozenset(pointers) if pointers is not None else None
        return out

    def session(self) -> Identities:
        """:meth:`fresh`, plus the "no pointer" answers of this process's earlier sessions
        while no merge happened since they were read (one read of ``subjects/epoch``)."""
        got = self.state.get(SUBJECTS_EPOCH_KEY)
        epoch = got.value if got is not None else b"0"
        memory = self._memory
        with memory.lock:
            if memory.epoch != epoch:
                memory.epoch, memory.roots = epoch, set()
        out = self.fresh()
        out._epoch = epoch
        return out

    def _known_root(self, subject: str) -> bool:
        if subject in self._roots:
            return True
        if self._epoch is None:
            return False
        memory = self._memory
        with memory.lock:
            return memory.epoch == self._epoch and subject in memory.roots

    def _remember_root(self, subject: str) -> None:
        self._roots.add(subject)
        if self._epoch is None:
            return
        memory = self._memory
        with memory.lock:
            if memory.epoch != self._epoch:
                return  # a merge since this session opened: keep nothing of it
            if len(memory.roots) >= _ROOTS_MAX:
                memory.roots = set()
            memory.roots.add(subject)

    def _raise_epoch(self) -> None:
        """After a merge pointer is written: every session opened from now on, in any
        process, reads pointers again."""
        self._raised = True
        with self._memory.lock:
            self._memory.epoch, self._memory.roots = None, set()  # this process at once
        for _ in range(_TRIES):
            got = self.state.get(SUBJECTS_EPOCH_KEY)
            value = str(int(got.value) + 1 if got is not None else 1).encode()
            try:
                if got is None:
                    self.state.put(SUBJECTS_EPOCH_KEY, value, if_absent=True)
                else:
                    self.state.put(SUBJECTS_EPOCH_KEY, value, if_match=got.token)
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"{SUBJECTS_EPOCH_KEY}: too much contention")

    @property
    def roots(self) -> frozenset[str]:
        """Subjects read as having no pointer (this session)."""
        return frozenset(self._roots)

    # -- reading --------------------------------------------------------------------------

    def alias_subject(self, pseudo: Pseudonymizer, business: str, alias: str) -> str | None:
        """The subject ``alias`` was registered to (not necessarily canonical)."""
        name = ALIAS_PREFIX + pseudo.alias(business, alias)
        if name in self._aliases:
            return self._aliases[name]
        value = self.state.get(name)
        if value is None:
            return None
        self._aliases[name] = value.value.decode()
        return self._aliases[name]

    def pointer(self, subject: str) -> dict[str, Any] | None:
        """The ``merged_into`` pointer of ``subject``; None while it is canonical."""
        if subject in self._parents:
            return self._parents[subject]
        if self._known_root(subject):
            return None
        if self._pointers is not None and subject not in self._pointers:
            self._roots.add(subject)
            return None
        value = self.state.get(MERGED_PREFIX + subject)
        if value is None:
            self._remember_root(subject)
            return None
        doc: dict[str, Any] = json.loads(value.value)
        self._parents[subject] = doc
        return doc

    def find(self, subject: str) -> str:
        """The canonical subject id of ``subject``'s person (the smallest id of its class)."""
        node = subject
        for _ in range(10_000):  # pointers only decrease: a chain ends
            doc = self.pointer(node)
            if doc is None:
                return node
            node = str(doc["into"])
        raise RuntimeError(f"merge chain of {subject} does not end")

    def members(self, subject: str) -> list[str]:
        """Every subject id of ``subject``'s person, sorted (the canonical one first)."""
        root = self.find(subject)
        out = {root}
        stack = [root]
        while stack:
            node = stack.pop()
            prefix = children_of(node)
            for key in list(self.state.list(prefix)):
                child = key[len(prefix) :]
                doc = self.pointer(child)
                if child not in out and doc is not None and doc.get("into") == node:
                    out.add(child)
                    stack.append(child)
        return sorted(out)

    def resolve(self, pseudo: Pseudonymizer, business: str, aliases: Iterable[str]) -> str | None:
        """The canonical subject of the first registered alias; None when none is."""
        for alias in aliases:
            found = self.alias_subject(pseudo, business, alias)
            if found is not None:
                return self.find(found)
        return None

    # -- linking (Meta's payloads only) ---------------------------------------------------

    def link(
        self,
        pseudo: Pseudonymizer,
        business: str,
        aliases: Sequence[str],
        *,
        default: str,
        by: str | None,
    ) -> tuple[str, list[Merge]]:
        """Register ``aliases`` as one person and return its canonical subject with the
        merges made by ``by`` on the way (including those an earlier, crashed attempt of
        ``by`` made: the caller logs them; their leaf bytes are the same each time).

        An alias seen for the first time joins the person of the aliases already known
        (else ``default``); aliases already known to different subjects merge them."""
        found = {alias: self.alias_subject(pseudo, business, alias) for alias in aliases}
        known = [s for s in found.values() if s is not None]
        base = self.find(known[0]) if known else default
        for alias, subject in found.items():
            if subject is None:
                found[alias] = self._register(pseudo, business, alias, base)
        subjects = sorted({s for s in found.values() if s is not None})
        for other in subjects[1:]:
            self._union(other, subjects[0], business, by)
        root = self.find(subjects[0]) if subjects else default
        merges = self._merges_by(subjects, by)
        if merges and not self._raised:
            # A retry of a merging batch finds its pointers here: raise the epoch again,
            # in case the crash came between a pointer and its raise (``_union``).
            self._raise_epoch()
        return root, merges

    def register(self, pseudo: Pseudonymizer, business: str, alias: str) -> str:
        """The canonical subject of one alias, registering it to its own pseudonym when
        it is new (one alias links nothing: a caller's word may do this much)."""
        known = self.alias_subject(pseudo, business, alias)
        if known is None:
            known = self._register(pseudo, business, alias, pseudo.subject(business, alias))
        return self.find(known)

    def _register(self, pseudo: Pseudonymizer, business: str, alias: str, subject: str) -> str:
        name = ALIAS_PREFIX + pseudo.alias(business, alias)
        try:
            self.state.put(name, subject.encode(), if_absent=True)
        except PreconditionFailed:
            value = self.state.get(name)  # a concurrent registration: merged by the caller
            assert value is not None
            subject = value.value.decode()
        self._aliases[name] = subject
        return subject

    def _union(self, a: str, b: str, business: str, by: str | None) -> None:
        for _ in range(_TRIES):
            ra, rb = self.find(a), self.find(b)
            if ra == rb:
                return
            low, high = sorted((ra, rb))
            # The reverse index first: a crash before the pointer leaves an entry that
            # does not count (its pointer is absent or names another subject).
            self.state.put(child_key(low, high), b"{}")
            doc = {"into": low, "at": self.clock().isoformat(), "by": by, "business": business}
            try:
                self.state.put(MERGED_PREFIX + high, json.dumps(doc).encode(), if_absent=True)
            except PreconditionFailed:
                self._roots.discard(high)  # merged elsewhere meanwhile: walk again
                with self._memory.lock:  # (its merger raises the epoch for everyone)
                    self._memory.epoch, self._memory.roots = None, set()
                continue
            self._roots.discard(high)
            self._parents[high] = doc
            self._raise_epoch()
            return
        raise PreconditionFailed(f"merging {a} and {b}: too much contention")

    def _merges_by(self, subjects: Iterable[str], by: str | None) -> list[Merge]:
        if by is None:
            return []
        out: dict[str, Merge] = {}
        for start in subjects:
            node = start
            while (doc := self.pointer(node)) is not None:
                if doc.get("by") == by and node not in out:
                    out[node] = Merge(
                        node,
                        str(doc["into"]),
                        datetime.fromisoformat(str(doc["at"])),
                        by,
                        str(doc.get("business") or ""),
                    )
                node = str(doc["into"])
        return [out[k] for k in sorted(out)]


def merged_entry(merge: Merge, pseudo: Pseudonymizer) -> bytes:
    """The ``subject_merged`` leaf: pseudonyms only (both subjects, the merged one's
    conversation so the index can find its documents), timed when the pointer was
    written, so a retry after a crash logs the same bytes."""
    return make_entry(
        EntryKind.SUBJECT_MERGED,
        time=merge.at,
        subject=merge.subject,
        into=merge.into,
        conversation=pseudo.conversation(merge.business, merge.subject),
        event="subject:merged",
    ).data


def canonical_subject(state: StateStore, subject: str) -> str:
    """The canonical subject id of the person ``subject`` belongs to."""
    return Identities(state).find(subject)


def person_subjects(state: StateStore, subject: str) -> list[str]:
    """Every subject id (so every data key owner) of the person ``subject`` belongs to,
    canonical first: what erasure shreds, holds protect and consent reads together."""
    ids = Identities(state)
    root = ids.find(subject)
    return [root, *(s for s in ids.members(root) if s != root)]


def resolve_subject(
    state: StateStore, pseudo: Pseudonymizer, phone_number_id: str, contact: str
) -> str:
    """The canonical subject pseudonym of ``contact`` at business ``phone_number_id``:
    through the alias registry and the merges, so a phone number and a BSUID of one
    person give the same answer; a contact never seen gets the deterministic pseudonym
    of its primary alias. The person's other subject
    ids: :func:`person_subjects`."""
    aliases = contact_aliases(contact)
    found = Identities(state).resolve(pseudo, phone_number_id, aliases)
    return found or pseudo.subject(phone_number_id, aliases[0])


__all__ = [
    "Identities",
    "Merge",
    "canonical_subject",
    "merged_entry",
    "person_subjects",
    "resolve_subject",
]
