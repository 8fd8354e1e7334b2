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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.keyspace import ALIAS_PREFIX, MERGED_PREFIX, child_key, children_of
from archiver.ledger.entry import EntryKind, make_entry
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore
from archiver.subjects.aliases import contact_aliases

_TRIES = 20


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
    ) -> None:
        self.state = state
        self.clock = clock
        self._aliases = _aliases if _aliases is not None else {}
        self._parents = _parents if _parents is not None else {}
        self._roots: set[str] = set()  # known to have no pointer (this session only)
        # Every subject that had a pointer, listed (None: not known); see ``fresh``.
        self._pointers: frozenset[str] | None = None

    def fresh(self, roots: Iterable[str] = (), pointers: Iterable[str] | None = None) -> Identities:
        """The same caches of write-once values, without the "no pointer" answers, or
        with ``roots`` as those (subjects a caller knows had no pointer as of a point it
        can vouch for: the index follower, which sees every merge's leaf). ``pointers``:
        every subject that had a pointer as of such a point (a listing of them), so any
        other subject is a root without a read."""
        out = Identities(
            self.state, clock=self.clock, _aliases=self._aliases, _parents=self._parents
        )
        out._roots = set(roots)
        out._pointers = frozenset(pointers) if pointers is not None else None
        return out

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
        if subject in self._roots:
            return None
        if self._pointers is not None and subject not in self._pointers:
            self._roots.add(subject)
            return None
        value = self.state.get(MERGED_PREFIX + subject)
        if value is None:
            self._roots.add(subject)
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
        return root, self._merges_by(subjects, by)

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
                continue
            self._roots.discard(high)
            self._parents[high] = doc
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
