"""Legal holds: S3 Object Lock legal holds on every object version in a hold's scope.

A hold's scope is a search ``query`` (docs/search.md syntax), a ``conversation``
pseudonym, or a ``contact`` (resolved to its subject pseudonym); ``case_id`` is a label
that groups holds of one matter. Placing a hold puts a legal hold on each matching record
version, on the raw capture batch each came from and on its media blobs, logs one
``hold_placed`` leaf per version, and protects the subjects' keys in the KeyStore
(reason ``hold:<id>``) so they cannot be shredded. Releasing lifts the legal hold only
from versions that no other open hold covers (``hold_released`` leaves) and removes the
hold's own protection reason (KeyStore reasons stack, so another hold keeps protecting).

Working state::

    holds/<hold id>   the hold: scope, status (placing | open | releasing | released),
                      subjects, held items {"<key>@<version>": {key, version_id, kind}},
                      raw slots "<raw key>#<slot>" (for erasure's check), and
                      ``broken`` {code, message, at} while its scope fails to run
    holds/_open       {hold id: {"subjects", "conversations", "numbers", "query"}}: the
                      cheap check the processor and the index follower run after each
                      batch (one GET)
    hold-targets/<hold id>/<message ref>
                      one empty marker per message the hold holds (:func:`unit_of` of
                      every record it holds): the held family targets
    holds/_tails/<hold id>
                      an empty marker: the hold's ``family_tail`` (leaves of the index
                      lag its placement left to the ``holds-family`` job; the hold shows
                      ``applying: true`` until the job has read them)

Later arrivals: ``hold_new_arrivals`` is called (through the :func:`on_logged` hook) by
the processor and the consent recorder after a batch's leaves are appended; a record
whose subject or conversation an open hold names is held then.
A ``query`` hold cannot be checked there (a new record is not in the index yet), so
``hold_indexed_arrivals`` (``archiver.retention.arrivals``) is called by the index
follower after each indexed batch: it runs each open hold's query restricted to the
documents just indexed (``SearchRequest.ids``). The ``holds-refresh`` job (every
:data:`REFRESH_INTERVAL_S`, under a lease) re-runs every open query hold as a safety net,
as ``archiver holds refresh`` does.

A message's family follows it: a record whose :func:`unit_of` (the message it folds into:
an edit's, revoke's or reaction's target, else its own ``message_ref``; computable from
the clear header alone) is a held target of an open hold is held by that hold, when it
arrives (``hold_new_arrivals``) and when it is indexed (``hold_indexed_arrivals``, for a
parent held by its query only after the child arrived). One GET per record and open
hold: no scan. At placement (and on a refresh) the family already archived is held too,
whatever the arrival order (a status delivered before its message, a reaction logged
before the hold): ``HoldService.hold_family`` streams the conversation of each newly held
record from the index after the targets are written, and the index follower's hook
holds, for every open query hold, a family member indexed after that. A member logged
before the targets were written but not indexed yet (another participant's reaction in a
group, under a subject hold) is read by the same pass from the log's unindexed tail (the
index cursor to the log's size): the follower's hook stays free of searches without a
query hold.

Holds placed before held targets existed (no ``targets_complete`` on their document) are
backfilled by the ``holds-backfill`` job (:meth:`HoldService.backfill_targets`, at start
under a per-run lease, then every :data:`REFRESH_INTERVAL_S`) and by ``holds-refresh``:
their scope is re-run once with every held record's message recorded as a target, then
the flag is set (idempotent: markers are empty puts, held versions are skipped).

A subject hold finds its records through the subject's grants
(``archiver.retention.subject_lookup``), not by reading every record header; a conversation
hold through the traces ``convsubjects/<conversation>/<subject>`` of the subjects its
records name, then those subjects' grants (``archiver.retention.conversation_lookup``). Both fall
back to reading every header when they cannot answer exactly (a batch in flight, an
archive not yet backfilled, a subject-less record traced by older code without its batch).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from archiver.errors import Conflict, InvalidInput, NotFound
from archiver.indexing.follower import indexed_size
from archiver.keys.errors import KeyNotFound
from archiver.keyspace import (
    HOLD_TAILS_PREFIX,
    HOLDS_OPEN_KEY,
    HOLDS_PREFIX,
    case_key,
    hold_tail_key,
    hold_target_key,
    hold_targets_of,
)
from archiver.ledger.entry import EntryKind, make_entry, parse_entry
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.metrics import HOLD_FAILURES
from archiver.records.model import RecordError, iso
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.attachments import (
    Attachment,
    AttachmentView,
    attachment_of_header,
    message_versions,
)
from archiver.retention.common import (
    StoredRecord,
    read_stored_record,
    record_by_id,
)
from archiver.retention.conversation_lookup import conversation_records
from archiver.retention.subject_lookup import subject_records
from archiver.store.errors import ObjectNotFound, PreconditionFailed, StoreUnavailable
from archiver.store.port import ObjectStore, StateStore
from archiver.subjects.identity import person_subjects
from search.port import SearchIndex, SearchRequest, SearchResult
from search.query import MatchAll
from search.query import parse as parse_query

logger = get_logger("archiver.holds")

_CAS_TRIES = 30
REFRESH_INTERVAL_S = 900.0  # the holds-refresh safety net: every 15 minutes
_FAMILY_CHUNK = 1000  # log leaves read at a time by the family pass's unindexed window
# Leaves of the index's lag a placement reads in the request (one header read per record
# leaf, ~0.3 ms embedded, more on S3); the rest of the lag is the hold's ``family_tail``,
# finished by the ``holds-family`` job, and the hold shows ``applying`` until then.
FAMILY_TAIL_IN_REQUEST = 500
FAMILY_PASS_INTERVAL_S = 5.0  # how often the holds-family job looks for unfinished tails


class HoldStatus(StrEnum):
    """``status`` of ``holds/<id>`` (stored: the values never change)."""

    PLACING = "placing"  # written, items still being held; already protects
    OPEN = "open"
    RELEASING = "releasing"
    RELEASED = "released"


OPEN_STATUSES = frozenset({HoldStatus.PLACING, HoldStatus.OPEN})


class Protector(Protocol):
    def protect(self, subject_id: str, reason: str) -> dict[str, Any]: ...

    def unprotect(self, subject_id: str, reason: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class HoldScope:
    """What a hold covers; at least one of query / conversation / subject."""

    query: str | None = None
    conversation: str | None = None
    subject: str | None = None  # resolved from the request's contact
    phone_number_id: str | None = None  # restricts the scope to one business number

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "conversation": self.conversation,
            "subject": self.subject,
            "phone_number_id": self.phone_number_id,
        }


def unit_of(header: Mapping[str, Any]) -> str | None:
    """The message a record belongs to (its ``message_ref`` pseudonym, unique per business
    number): an edit's, revoke's or reaction's target, else its own message ref (a message,
    its statuses, a history media delivery). Same rule as the index's folds and
    ``archiver.cases.scope``."""
    refs = header.get("refs") or {}
    ref = (refs.get("edit_of") or refs.get("revoke_of") or refs.get("reaction_to")
           or header.get("message_ref"))  # fmt: skip
    return str(ref) if ref else None


def hold_reason(hold_id: str) -> str:
    return f"hold:{hold_id}"


def item_id(key: str, version_id: str) -> str:
    return f"{key}@{version_id}"


class HoldRegistry:
    """The store-facing half: legal holds, log leaves, key protection, the registry."""

    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        log: LogAppender,
        keys: Protector | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.objects = objects
        self.state = state
        self.log = log
        self.keys = keys
        self.clock = clock
        # Run after a release: erasure destroys the raw slots this hold alone kept
        # (``ErasureService.settle_kept_slots``, wired by ``archiver.retention.services``).
        self.after_release: list[Callable[[], object]] = []

    # -- registry documents -------------------------------------------------------------
    def read(self, hold_id: str) -> tuple[dict[str, Any], str]:
        value = self.state.get(HOLDS_PREFIX + hold_id)
        if value is None or hold_id.startswith("_"):
            raise NotFound(f"no hold {hold_id}", code="hold_not_found")
        doc: dict[str, Any] = json.loads(value.value)
        return doc, value.token

    def update(
        self, hold_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        for _ in range(_CAS_TRIES):
            doc, token = self.read(hold_id)
            new = change(doc)
            try:
                self.state.put(HOLDS_PREFIX + hold_id, _dump(new), if_match=token)
                return new
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"hold {hold_id}: too much contention")

    def open_index(self) -> dict[str, Any]:
        value = self.state.get(HOLDS_OPEN_KEY)
        return {} if value is None else dict(json.loads(value.value))

    def set_open(self, hold_id: str, criteria: Mapping[str, Any] | None) -> None:
        """Add (criteria given) or remove (None) one hold in ``holds/_open`` by CAS."""
        for _ in range(_CAS_TRIES):
            value = self.state.get(HOLDS_OPEN_KEY)
            index = {} if value is None else dict(json.loads(value.value))
            if criteria is None:
                index.pop(hold_id, None)
            else:
                index[hold_id] = dict(criteria)
            try:
                if value is None:
                    self.state.put(HOLDS_OPEN_KEY, _dump(index), if_absent=True)
                else:
                    self.state.put(HOLDS_OPEN_KEY, _dump(index), if_match=value.token)
                return
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"{HOLDS_OPEN_KEY}: too much contention")

    def all(self) -> list[dict[str, Any]]:
        out = []
        for key in self.state.list(HOLDS_PREFIX):
            name = key[len(HOLDS_PREFIX):]
            if name.startswith("_") or "/" in name:
                continue
            value = self.state.get(key)
            if value is not None:
                out.append(json.loads(value.value))
        return out

    def open_holds(self) -> list[dict[str, Any]]:
        return [h for h in self.all() if h.get("status") in OPEN_STATUSES]

    # -- placing ------------------------------------------------------------------------
    def items_of(
        self, records: Iterable[StoredRecord]
    ) -> tuple[list[tuple[str, str, str]], set[str], set[str]]:
        """(key, version, kind) of each record, its raw batch and its attachments (link
        records and blobs, from the logged links: ``archiver.retention.attachments``); raw
        slots; subjects. A link record in ``records`` brings its own blob."""
        items: dict[str, tuple[str, str, str]] = {}
        slots: set[str] = set()
        subjects: set[str] = set()
        messages: list[str] = []
        for r in records:
            items.setdefault(item_id(r.key, r.version_id), (r.key, r.version_id, "record"))
            raw = r.raw
            if raw is not None:
                items.setdefault(item_id(raw[0], raw[1]), (raw[0], raw[1], "raw"))
                slots.add(f"{raw[0]}#{raw[2]}")
            if r.subject:
                subjects.add(r.subject)
            own = attachment_of_header(r.key, r.version_id, dict(r.header))
            if own is not None and own.blob is not None:
                items.setdefault(item_id(*own.blob), (*own.blob, "media"))
            messages.append(r.record_id)
        for a in self.attachments_of(messages):
            items.setdefault(item_id(*a.link), (*a.link, "record"))
            if a.blob is not None:
                items.setdefault(item_id(*a.blob), (*a.blob, "media"))
        return list(items.values()), slots, subjects

    def attachments_of(self, record_ids: Sequence[str]) -> list[Attachment]:
        """The logged attachments of messages ``record_ids`` (the view caught up first)."""
        if not record_ids:
            return []
        view = AttachmentView(log=self.log, objects=self.objects, state=self.state)
        view.catch_up()
        return view.of_messages(record_ids)

    def hold_records(self, hold_id: str, records: Iterable[StoredRecord], *,
                     all_targets: bool = False) -> int:  # fmt: skip
        """``hold_items`` for ``records`` with their raw batches and media (``items_of``),
        and their messages recorded as held targets (for records not held before, or all
        of them with ``all_targets``: a full re-run backfills holds placed earlier)."""
        records = list(records)
        if not records:
            return 0
        held = self.read(hold_id)[0].get("items", {})
        fresh = records if all_targets else [
            r for r in records if item_id(r.key, r.version_id) not in held]
        # Targets first: a family member arriving meanwhile is caught by the hook.
        self.add_targets(hold_id, {u for r in fresh if (u := unit_of(r.header))})
        items, slots, subjects = self.items_of(records)
        return self.hold_items(hold_id, items, slots, subjects)

    def add_targets(self, hold_id: str, refs: Iterable[str]) -> None:
        for ref in sorted(set(refs)):
            self.state.put(hold_target_key(hold_id, ref), b"")

    def holds_target(self, hold_id: str, ref: str) -> bool:
        """Does the hold hold message ``ref``? One GET."""
        return self.state.get(hold_target_key(hold_id, ref)) is not None

    def drop_targets(self, hold_id: str) -> None:
        for key in list(self.state.list(hold_targets_of(hold_id))):
            with contextlib.suppress(Exception):  # best effort: a released hold is not open
                self.state.delete(key)

    def hold_items(
        self, hold_id: str, items: Sequence[tuple[str, str, str]], slots: Iterable[str],
        subjects: Iterable[str],
    ) -> int:
        """Put the legal hold on each item not yet held by this hold, log it, record it in
        the hold's document, protect the subjects. Returns how many were newly held."""
        doc, _ = self.read(hold_id)
        held = doc.get("items", {})
        new = [i for i in items if item_id(i[0], i[1]) not in held]
        placed: list[tuple[str, str, str]] = []
        for key, version, kind in new:
            try:
                self.objects.set_legal_hold(key, version, True)
            except ObjectNotFound:
                continue  # disposed meanwhile: nothing left to hold
            placed.append((key, version, kind))
        now = self.clock()
        if placed:
            self.log.append([
                make_entry(EntryKind.HOLD_PLACED, time=now, key=key, version_id=version,
                           hold=hold_id, object_kind=kind).data
                for key, version, kind in placed
            ])  # fmt: skip
        new_subjects = sorted(set(subjects) - set(doc.get("subjects", [])))
        for subject in new_subjects:
            if self.keys is not None:
                self.keys.protect(subject, hold_reason(hold_id))

        def change(d: dict[str, Any]) -> dict[str, Any]:
            d["items"] = {
                **d.get("items", {}),
                **{item_id(k, v): {"key": k, "version_id": v, "kind": kind}
                   for k, v, kind in placed},
            }
            d["slots"] = sorted(set(d.get("slots", [])) | set(slots))
            d["subjects"] = sorted(set(d.get("subjects", [])) | set(new_subjects))
            d["updated_at"] = iso(now)
            return d

        self.update(hold_id, change)
        return len(placed)

    # -- releasing ----------------------------------------------------------------------
    def release(self, hold_id: str, *, by: str) -> dict[str, Any]:
        doc, _ = self.read(hold_id)
        if doc.get("status") == HoldStatus.RELEASED:
            return doc
        self.update(hold_id, lambda d: {**d, "status": HoldStatus.RELEASING})
        self.set_open(hold_id, None)
        others: set[str] = set()
        for other in self.open_holds():
            if other["id"] != hold_id:
                others |= set(other.get("items", {}))
        doc, _ = self.read(hold_id)
        released: list[tuple[str, str]] = []
        kept = 0
        for ident, item in doc.get("items", {}).items():
            if ident in others:
                kept += 1
                continue
            try:
                self.objects.set_legal_hold(item["key"], item["version_id"], False)
            except ObjectNotFound:
                continue
            released.append((item["key"], item["version_id"]))
        now = self.clock()
        if released:
            self.log.append([
                make_entry(EntryKind.HOLD_RELEASED, time=now, key=key, version_id=version,
                           hold=hold_id).data
                for key, version in released
            ])  # fmt: skip
        for subject in doc.get("subjects", []):
            if self.keys is not None:
                # KeyNotFound: never protected (no keys yet) or already unprotected.
                with contextlib.suppress(KeyNotFound):
                    self.keys.unprotect(subject, hold_reason(hold_id))
        done = self.update(hold_id, lambda d: {
            **d, "status": HoldStatus.RELEASED, "released_at": iso(now), "released_by": by,
            "released_count": len(released), "kept_by_other_holds": kept,
        })  # fmt: skip
        self.drop_targets(hold_id)  # it is out of holds/_open: no hook reads them any more
        for after in self.after_release:
            try:
                after()
            except Exception:  # the release stands; the erasure-resume job settles later
                logger.exception("hold_after_release_failed", hold=hold_id)
        return done

    # -- checks for the other jobs ------------------------------------------------------
    def applying(self) -> list[str]:
        """Holds not fully applied: still ``placing`` (a placement running, or killed
        midway until the ``holds-backfill`` job re-runs it), or with a family pass not
        finished (a ``family_tail`` the ``holds-family`` job has not read yet, or one it
        failed on). They cover records their items do not list yet."""
        tails = {k[len(HOLD_TAILS_PREFIX):] for k in self.state.list(HOLD_TAILS_PREFIX)}
        placing = {str(h["id"]) for h in self.open_holds()
                   if h.get("status") == HoldStatus.PLACING}  # fmt: skip
        return sorted(tails | placing)

    def held_items(self) -> set[str]:
        """``key@version`` of every version an open hold covers."""
        out: set[str] = set()
        for h in self.open_holds():
            out |= set(h.get("items", {}))
        return out

    def holds_covering(self, subject: str | None, slots: Iterable[str] = ()) -> list[str]:
        """Open holds naming ``subject`` (or another subject id of its person: a hold on
        either of two merged subjects covers both) or covering one of the raw ``slots``
        (``subject`` None: the slots only)."""
        wanted = set(slots)
        person = set(person_subjects(self.state, subject)) if subject else set()
        out = []
        for h in self.open_holds():
            scope = h.get("scope", {})
            if (person & set(h.get("subjects", [])) or scope.get("subject") in person
                    or wanted & set(h.get("slots", []))):
                out.append(str(h["id"]))
        return sorted(out)


def _matches(criteria: Mapping[str, Any], header: Mapping[str, Any]) -> bool:
    numbers = criteria.get("numbers")
    business = (header.get("business") or {}).get("phone_number_id")
    if numbers is not None and business not in numbers:
        return False
    return bool(
        (header.get("subject") and header.get("subject") in criteria.get("subjects", []))
        or (header.get("conversation")
            and header.get("conversation") in criteria.get("conversations", []))
    )


def _family_held(registry: HoldRegistry, hold_id: str, criteria: Mapping[str, Any],
                 header: Mapping[str, Any]) -> bool:  # fmt: skip
    """A record of a message (edit, revoke, reaction, status, history media, the message
    itself) the hold holds: one GET (``hold-targets/<hold>/<ref>``), never a scan."""
    numbers = criteria.get("numbers")
    business = (header.get("business") or {}).get("phone_number_id")
    if numbers is not None and business not in numbers:
        return False
    unit = unit_of(header)
    return unit is not None and registry.holds_target(hold_id, unit)


def hold_new_arrivals(
    *,
    objects: ObjectStore,
    state: StateStore,
    log: LogAppender,
    keys: object,
    written: Sequence[tuple[str, str]],
) -> int:
    """The processor's hook, after a batch's leaves are appended: hold each new record
    version (``(key, version_id)``) that an open hold's subject or conversation names.
    Costs one state GET when no hold is open. Returns the number of versions held."""
    value = state.get(HOLDS_OPEN_KEY)
    if value is None:
        return 0
    index: dict[str, Any] = json.loads(value.value)
    if not index or not written:
        return 0
    protector = keys if hasattr(keys, "protect") and hasattr(keys, "unprotect") else None
    registry = HoldRegistry(objects=objects, state=state, log=log, keys=protector)
    records = [read_stored_record(objects, key, version) for key, version in written]
    # A hold names the subject ids its person had when it was placed; a record written
    # under another id of that person (merged since) is the same person's.
    people = {s: set(person_subjects(state, s)) for s in {r.subject for r in records if r.subject}}
    total = 0
    for hold_id, criteria in sorted(index.items()):
        direct = [r for r in records if _matches(criteria, r.header)
                  or people.get(r.subject or "", set()) & set(criteria.get("subjects", []))]
        # The family of a message held now (same batch) or before (its marker).
        units = {u for r in direct if (u := unit_of(r.header))}
        hits = direct + [r for r in records if r not in direct
                         and (unit_of(r.header) in units
                              or _family_held(registry, hold_id, criteria, r.header))]
        if not hits:
            continue
        total += hold_isolated(registry, hold_id, registry.hold_records, hits)
    if total:
        logger.info("hold_applied_to_new_arrivals", versions=total)
    return total


def hold_isolated(
    registry: HoldRegistry, hold_id: str, hold: Callable[..., int], *args: Any
) -> int:
    """``hold(hold_id, *args)`` for one hold, so that its failure is its own: a hold
    released meanwhile holds nothing (0); a store outage is raised (not this hold's fault:
    the caller's work is retried); anything else flags this hold broken and the others go
    on (issue 14 #9). Returns the number of versions newly held."""
    try:
        return hold(hold_id, *args)
    except NotFound:
        return 0  # released and removed meanwhile
    except StoreUnavailable:
        raise
    except Exception as exc:  # this hold's own failure: flag it, hold the others
        flag_broken(registry, hold_id, exc)
        return 0


def flag_broken(registry: HoldRegistry, hold_id: str, exc: BaseException) -> None:
    """Mark a hold whose scope failed to run (``broken``: code, message, when), count it,
    and go on: the caller keeps working the other holds. Written once per distinct
    failure, not once per batch."""
    code = str(getattr(exc, "code", None) or type(exc).__name__)
    HOLD_FAILURES.labels(code).inc()
    logger.error("hold_scope_failed", hold=hold_id, error_code=code)
    message = str(exc)[:500]

    def change(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "broken": {"code": code, "message": message, "at": iso(registry.clock())}}

    try:
        doc, _ = registry.read(hold_id)
        if (doc.get("broken") or {}).get("code") != code:
            registry.update(hold_id, change)
    except Exception:  # the flag is best effort: the metric and the log already say it
        logger.exception("hold_flag_failed", hold=hold_id)


def hold_new_attachments(
    *, objects: ObjectStore, state: StateStore, log: LogAppender, keys: object,
    attachment: Attachment,
) -> int:
    """The media worker's hook, after a link's leaves are appended: an attachment follows
    its message, so every open hold that holds the message (or whose subject or
    conversation names it) holds the link record and the blob too. Costs one state GET
    when no hold is open. Returns the number of versions held."""
    value = state.get(HOLDS_OPEN_KEY)
    if value is None:
        return 0
    index: dict[str, Any] = json.loads(value.value)
    if not index:
        return 0
    protector = keys if hasattr(keys, "protect") and hasattr(keys, "unprotect") else None
    registry = HoldRegistry(objects=objects, state=state, log=log, keys=protector)
    message = [r for r in (_read_quietly(objects, *mv)
                           for mv in message_versions(objects, attachment.message)) if r]
    items = [(*attachment.link, "record")]
    if attachment.blob is not None:
        items.append((*attachment.blob, "media"))
    keys_of_message = {r.key for r in message}
    total = 0
    for hold_id, criteria in sorted(index.items()):
        try:
            doc, _ = registry.read(hold_id)
        except NotFound:
            continue
        if doc.get("status") not in OPEN_STATUSES:
            continue
        holds_message = any(i.get("key") in keys_of_message
                            for i in doc.get("items", {}).values())
        if not (holds_message or any(_matches(criteria, r.header) for r in message)):
            continue
        total += hold_isolated(registry, hold_id, registry.hold_items, items, (), ())
    if total:
        logger.info("hold_applied_to_new_attachment", versions=total)
    return total


def _read_quietly(objects: ObjectStore, key: str, version: str) -> StoredRecord | None:
    try:
        return read_stored_record(objects, key, version)
    except ObjectNotFound:
        return None


def hold_merged_people(
    *,
    objects: ObjectStore,
    state: StateStore,
    log: Any,
    keys: object,
    subjects: Iterable[str],
) -> int:
    """The processor's hook after a batch that merged subjects: an open hold naming any
    subject id of a merged person now holds the records of all its ids (and protects
    their keys). Costs one state GET when no hold is open. Returns versions newly held."""
    value = state.get(HOLDS_OPEN_KEY)
    index: dict[str, Any] = json.loads(value.value) if value else {}
    wanted = sorted(set(subjects))
    if not index or not wanted:
        return 0
    protector = keys if hasattr(keys, "protect") and hasattr(keys, "unprotect") else None
    registry = HoldRegistry(objects=objects, state=state, log=log, keys=protector)
    total = 0
    for subject in wanted:
        person = person_subjects(state, subject)
        for hold_id, criteria in sorted(index.items()):
            if not set(person) & set(criteria.get("subjects", [])):
                continue
            numbers = criteria.get("numbers")
            records = [r for m in person for r in subject_records(objects, state, log, m)
                       if numbers is None or r.phone_number_id in numbers]
            total += hold_isolated(registry, hold_id, registry.hold_records, records)
    if total:
        logger.info("hold_applied_to_merged_subjects", versions=total)
    return total


def on_logged(
    *, objects: ObjectStore, state: StateStore, log: LogAppender, keys: object
) -> Callable[[Sequence[tuple[str, str]], Sequence[str]], None]:
    """The writers' ``on_logged`` hook (``archiver.ingest.ports.LoggedHook``), wired by
    ``Runtime.open``: new record versions an open hold names are held, then the records
    of the people this batch merged. Synchronous: a hold protects a new subject's key
    before any erasure can reach it."""

    def hook(written: Sequence[tuple[str, str]], merged: Sequence[str]) -> None:
        hold_new_arrivals(objects=objects, state=state, log=log, keys=keys, written=written)
        if merged:
            hold_merged_people(objects=objects, state=state, log=log, keys=keys,
                               subjects=merged)  # fmt: skip

    return hook


def records_of_hits(objects: ObjectStore, result: SearchResult) -> dict[str, StoredRecord]:
    """The stored records behind search hits (a hit's id is its record id)."""
    found: dict[str, StoredRecord] = {}
    for hit in result.hits:
        try:
            r = record_by_id(objects, hit.id)
        except NotFound:
            continue  # disposed since it was indexed
        found[item_id(r.key, r.version_id)] = r
    return found


class InvalidHoldScope(InvalidInput):
    """A hold that names nothing to hold (no query, conversation or contact)."""

    code = "hold_scope_missing"


class HoldService:
    """The API- and CLI-facing half: resolve a scope to records, then use the registry."""

    def __init__(
        self,
        registry: HoldRegistry,
        index: SearchIndex,
        reader: LogAppender | None = None,
        pseudo: Pseudonymizer | None = None,
    ) -> None:
        self.registry = registry
        self.index = index
        self.reader = reader  # reads the log for the per-subject lookup; None: full scan
        self.pseudo = pseudo  # names a merged person's other one-to-one conversations

    def place(
        self,
        scope: HoldScope,
        *,
        case_id: str | None,
        reason: str | None,
        by: str,
        numbers: Sequence[str] | None,
    ) -> dict[str, Any]:
        # Before anything is registered: a hold whose query cannot run would stay
        # ``placing`` for good and fail every later-arrivals check (issue 14 #9).
        # Raises QuerySyntaxError (with the position or the limit).
        tree = parse_query(scope.query) if scope.query else None
        # A blank query matches everything, now and later: on its own it is no scope a
        # person meant to write, so it is refused like a missing one.
        names_something = tree is not None and not isinstance(tree, MatchAll)
        if not (names_something or scope.conversation or scope.subject):
            raise InvalidHoldScope(
                "a hold needs a scope: query, conversation or contact (case_id is a label)"
            )
        hold_id = "h_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()
        now = self.registry.clock()
        scoped = list(numbers) if numbers is not None else None
        if scope.phone_number_id:
            scoped = [n for n in (scoped or [scope.phone_number_id]) if n == scope.phone_number_id]
        doc = {
            "id": hold_id, "case_id": case_id, "reason": reason, "scope": scope.to_json(),
            "numbers": scoped, "status": HoldStatus.PLACING, "created_at": iso(now),
            "created_by": by,
            "items": {}, "slots": [], "subjects": [], "targets_complete": True,
        }  # fmt: skip
        self.registry.state.put(HOLDS_PREFIX + hold_id, _dump(doc), if_absent=True)
        # Open before matching, so a record written while we place is caught by the hook.
        self.registry.set_open(hold_id, {
            "subjects": [scope.subject] if scope.subject else [],
            "conversations": [scope.conversation] if scope.conversation else [],
            "numbers": scoped,
            "query": scope.query,
        })  # fmt: skip
        try:
            self._apply(hold_id, scope, scoped)
        except Exception as exc:
            # Left open (it keeps catching arrivals) but flagged, so the failure is visible.
            flag_broken(self.registry, hold_id, exc)
            raise
        done = self.registry.update(hold_id, lambda d: {**d, "status": HoldStatus.OPEN})
        return done

    def refresh(self, hold_id: str) -> int:
        """Re-run an open hold's scope and hold what it finds now (query holds' later
        arrivals). Returns the number of versions newly held."""
        doc, _ = self.registry.read(hold_id)
        if doc.get("status") not in OPEN_STATUSES:
            return 0
        s = doc["scope"]
        scope = HoldScope(s.get("query"), s.get("conversation"), s.get("subject"),
                          s.get("phone_number_id"))
        # A hold placed before held targets existed gets them on its first re-run; a hold
        # whose placement was killed midway (left ``placing``) gets its whole family pass
        # again: what it held before the kill counts as fresh, not as already done.
        placing = doc.get("status") == HoldStatus.PLACING
        backfill = not doc.get("targets_complete") or placing
        held = self._apply(hold_id, scope, doc.get("numbers"), all_targets=backfill)
        if backfill:
            self.registry.update(hold_id, lambda d: {**d, "targets_complete": True})
        if placing:
            self.registry.update(hold_id, lambda d: {
                **d, "status": HoldStatus.OPEN} if d.get("status") == HoldStatus.PLACING else d)
        if doc.get("broken"):  # it runs again: the flag of an earlier failure is stale
            self.registry.update(hold_id, lambda d: {k: v for k, v in d.items() if k != "broken"})
        return held

    def refresh_query_holds(self) -> dict[str, int]:
        """The ``holds-refresh`` job: re-run every open hold that has a query (the safety
        net behind ``hold_indexed_arrivals``). Returns versions newly held per hold."""
        done: dict[str, int] = {}
        for h in self.registry.open_holds():
            # Every query hold; and once, any hold placed before held targets existed
            # (``targets_complete`` unset): its markers are backfilled by the re-run.
            if h.get("status") == HoldStatus.OPEN and ((h.get("scope") or {}).get("query")
                                                      or not h.get("targets_complete")):
                try:
                    done[str(h["id"])] = self.refresh(str(h["id"]))
                except NotFound:
                    continue  # released and removed meanwhile
                except Exception as exc:  # one broken hold must not starve the others
                    flag_broken(self.registry, str(h["id"]), exc)
        if any(done.values()):
            logger.info("query_holds_refreshed", held=done)
        return done

    def backfill_targets(self) -> dict[str, int]:
        """The ``holds-backfill`` job (at start): re-run, once, every open hold placed
        before held targets existed (no ``targets_complete``), whatever its scope, so its
        markers exist (``refresh`` backfills them and sets the flag); and every hold left
        ``placing`` (its placement killed midway: nothing else ever finishes it), so it
        holds all it matches, family included, and opens. Re-running a placement another
        process is still doing is harmless (holding is idempotent). One listing of the
        holds when there is nothing to do. Returns versions newly held per hold."""
        done: dict[str, int] = {}
        for h in self.registry.open_holds():
            if h.get("status") == HoldStatus.OPEN and h.get("targets_complete"):
                continue
            try:
                done[str(h["id"])] = self.refresh(str(h["id"]))
            except NotFound:
                continue  # released and removed meanwhile
            except Exception as exc:  # one broken hold must not starve the others
                flag_broken(self.registry, str(h["id"]), exc)
        if done:
            logger.info("hold_targets_backfilled", held=done)
        return done

    def _apply(self, hold_id: str, scope: HoldScope, numbers: Sequence[str] | None, *,
               all_targets: bool = False) -> int:  # fmt: skip
        records = self.matching(scope, numbers)
        before = self.registry.read(hold_id)[0].get("items", {})
        held = self.registry.hold_records(hold_id, records, all_targets=all_targets)
        # The family of what is held now for the first time (all of it on a backfill): an
        # earlier pass found the family of the rest, and the hooks catch later arrivals.
        fresh = records if all_targets else [
            r for r in records if item_id(r.key, r.version_id) not in before]
        return held + self.hold_family(hold_id, fresh, numbers)

    def hold_family(self, hold_id: str, records: Sequence[StoredRecord],
                    numbers: Sequence[str] | None) -> int:  # fmt: skip
        """Hold the family already archived of every message ``records`` hold (statuses,
        edits, revokes, reactions, history media, and the message an edit or reaction is
        about), whatever their arrival order. Runs after ``hold_records`` wrote the held
        targets: a family member indexed from then on is caught by the index follower's
        hook (``hold_indexed_arrivals``), one indexed before is found here. A family shares
        a conversation and a message ref, so each conversation is streamed once."""
        units: dict[str, set[str]] = {}
        for r in records:
            unit, conversation = unit_of(r.header), r.header.get("conversation")
            if unit and isinstance(conversation, str):
                units.setdefault(conversation, set()).add(unit)
        if not units:
            return 0
        # The index lags the log: a member logged before the targets were written but not
        # indexed yet is in neither the index nor the processor's hook (it ran before the
        # hold existed), and the follower's hook checks query holds only. So the leaves
        # from the index's cursor to the log's size read *after* the targets were written
        # are read from the log itself; everything below the cursor is in the index (made
        # searchable by the refresh below); everything logged later meets the targets in
        # the processor's hook.
        log_end = self.registry.log.size()
        indexed = indexed_size(self.registry.state)
        refresh: Any = getattr(self.index, "refresh", None)
        if callable(refresh):
            refresh()
        # A long lag (the index was down) is not read in the request: the hold keeps the
        # range as its ``family_tail`` (recorded first, so a crash leaves it to the job)
        # and shows ``applying`` until ``finish_family_tails`` has read it.
        stop = min(log_end, indexed + FAMILY_TAIL_IN_REQUEST)
        if stop < log_end:
            self._defer_tail(hold_id, stop, log_end)
        everything = {u for wanted in units.values() for u in wanted}
        family: dict[str, StoredRecord] = self._unindexed_family(
            everything.__contains__, numbers, indexed, stop)
        for conversation, wanted in sorted(units.items()):
            cursor: str | None = None
            while True:
                page = self.index.search(SearchRequest(
                    filters={"conversation": [conversation]}, scope_numbers=numbers,
                    size=1000, cursor=cursor, sort="time_asc",
                ))  # fmt: skip
                for hit in page.hits:
                    ref = hit.doc.get("target_ref") or hit.doc.get("message_ref")
                    if ref in wanted:
                        with contextlib.suppress(NotFound):  # disposed since indexed
                            r = record_by_id(self.registry.objects, hit.id)
                            if unit_of(r.header) in wanted:
                                family[item_id(r.key, r.version_id)] = r
                cursor = page.next_cursor
                if not cursor or not page.hits:
                    break
        return self.registry.hold_records(hold_id, family.values()) if family else 0

    def _defer_tail(self, hold_id: str, begin: int, end: int) -> None:
        """Add leaves ``begin`` to ``end`` to the hold's ``family_tail`` (one range: the
        union of every deferred range, a superset is harmless) and mark it ``applying``."""

        def change(d: dict[str, Any]) -> dict[str, Any]:
            tail = d.get("family_tail") or {"next": begin, "end": end}
            tail = {"next": min(int(tail["next"]), begin), "end": max(int(tail["end"]), end)}
            return {**d, "family_tail": tail, "applying": True}

        self.registry.state.put(hold_tail_key(hold_id), b"")  # first: the job finds it
        self.registry.update(hold_id, change)

    def finish_family_tails(self) -> dict[str, int]:
        """The ``holds-family`` job: read the deferred ``family_tail`` of every hold marked
        in ``holds/_tails/`` (one listing when there is none), a chunk at a time (progress
        saved after each); hold each record whose message the hold holds (its held
        targets: one GET per record); then drop the tail and the ``applying`` flag.
        Returns versions newly held per hold."""
        done: dict[str, int] = {}
        state = self.registry.state
        for marker in list(state.list(HOLD_TAILS_PREFIX)):
            hold_id = marker[len(HOLD_TAILS_PREFIX):]
            try:
                done[hold_id] = self._finish_tail(hold_id)
            except NotFound:
                pass  # removed meanwhile: nothing to finish
            except Exception as exc:  # one broken hold must not starve the others
                flag_broken(self.registry, hold_id, exc)
                continue
            state.delete(marker)
        if any(done.values()):
            logger.info("hold_family_tails_finished", held=done)
        return done

    def _finish_tail(self, hold_id: str) -> int:
        held = 0
        while True:
            doc, _ = self.registry.read(hold_id)
            tail = doc.get("family_tail")
            if not tail:
                return held
            begin, end = int(tail["next"]), int(tail["end"])
            if doc.get("status") not in OPEN_STATUSES or begin >= end:
                # Done (or released: nothing left to hold for it).
                self.registry.update(hold_id, lambda d: {
                    **{k: v for k, v in d.items() if k != "family_tail"}, "applying": False})
                return held
            stop = min(end, begin + _FAMILY_CHUNK)
            found = self._unindexed_family(
                lambda unit: self.registry.holds_target(hold_id, unit),
                doc.get("numbers"), begin, stop)  # fmt: skip
            if found:
                held += self.registry.hold_records(hold_id, found.values())

            def advance(d: dict[str, Any], begin: int = begin, stop: int = stop
                        ) -> dict[str, Any]:  # fmt: skip
                t = d.get("family_tail")
                if t and int(t["next"]) == begin:  # else a placement widened it: re-read
                    return {**d, "family_tail": {**t, "next": stop}}
                return d

            self.registry.update(hold_id, advance)

    def _unindexed_family(self, wanted: Callable[[str], bool], numbers: Sequence[str] | None,
                          start: int, end: int) -> dict[str, StoredRecord]:  # fmt: skip
        """Records of messages ``wanted`` says the hold holds among leaves ``start`` to
        ``end`` (logged, not yet indexed): one header read per record leaf. A message ref
        is unique per business number, as in the processor's hook (``_family_held``)."""
        found: dict[str, StoredRecord] = {}
        log = self.registry.log
        for begin in range(start, end, _FAMILY_CHUNK):
            for data in log.entries(begin, min(end, begin + _FAMILY_CHUNK)):
                entry = parse_entry(data)
                if entry.kind is not EntryKind.RECORD or entry.key is None:
                    continue
                try:
                    r = read_stored_record(self.registry.objects, entry.key,
                                           str(entry.version_id))  # fmt: skip
                except (ObjectNotFound, RecordError):
                    continue  # disposed since: nothing left to hold
                unit = unit_of(r.header)
                if unit is None or not wanted(unit):
                    continue
                if numbers is None or r.phone_number_id in numbers:
                    found[item_id(r.key, r.version_id)] = r
        return found

    def matching(self, scope: HoldScope, numbers: Sequence[str] | None) -> list[StoredRecord]:
        """Records in scope: by header (conversation, subject) or by the index (query)."""
        found: dict[str, StoredRecord] = {}
        if scope.subject and not scope.conversation:
            # Through the grants of each subject id of the person, no full scan.
            state = self.registry.state
            for member in person_subjects(state, scope.subject):
                for r in subject_records(self.registry.objects, state, self.reader, member):
                    if numbers is None or r.phone_number_id in numbers:
                        found[item_id(r.key, r.version_id)] = r
        elif scope.conversation:
            # Through the traces of the subjects the conversation's records name
            # (archiver.retention.conversation_lookup); with a subject too, the union of both.
            state = self.registry.state
            objects = self.registry.objects
            records = conversation_records(objects, state, self.reader, scope.conversation)
            records += self._merged_thread(scope.conversation, records)
            if scope.subject:
                for member in person_subjects(state, scope.subject):
                    records += subject_records(objects, state, self.reader, member)
            for r in records:
                if numbers is None or r.phone_number_id in numbers:
                    found[item_id(r.key, r.version_id)] = r
        if scope.query:
            cursor: str | None = None
            while True:
                result = self.index.search(SearchRequest(
                    q=scope.query, scope_numbers=numbers, size=200, cursor=cursor,
                ))  # fmt: skip
                found.update(records_of_hits(self.registry.objects, result))
                cursor = result.next_cursor
                if not cursor or not result.hits:
                    break
        return list(found.values())

    def _merged_thread(
        self, conversation: str, records: Sequence[StoredRecord]
    ) -> list[StoredRecord]:
        """A person's one-to-one conversation is one thread after a merge (the index shows
        it under the canonical conversation): the records each other subject id of the
        person wrote in its own one-to-one conversation belong to the hold too."""
        if self.pseudo is None:
            return []
        state, objects = self.registry.state, self.registry.objects
        out: list[StoredRecord] = []
        seen: set[str] = set()
        for r in records:
            business = r.phone_number_id
            if not r.subject or not business or r.subject in seen:
                continue
            person = person_subjects(state, r.subject)
            if conversation != self.pseudo.conversation(business, person[0]):
                continue  # a group, or not the person's canonical thread
            for member in person:
                seen.add(member)
                own = self.pseudo.conversation(business, member)
                out += [m for m in subject_records(objects, state, self.reader, member)
                        if m.header.get("conversation") == own and own != conversation]
        return out

    def release(self, hold_id: str, *, by: str) -> dict[str, Any]:
        """Release a plain hold. A hold a case placed is released only through its case
        (``CaseService.release_hold``), which writes the chain of custody: Conflict
        ``hold_owned_by_case`` here."""
        doc, _ = self.registry.read(hold_id)
        case_id = owning_case(self.registry.state, doc)
        if case_id is not None and doc.get("status") != HoldStatus.RELEASED:
            raise Conflict(f"hold {hold_id} belongs to case {case_id}: release it through "
                           "the case", code="hold_owned_by_case",
                           details={"case_id": case_id})  # fmt: skip
        return self.registry.release(hold_id, by=by)

    def get(self, hold_id: str) -> dict[str, Any]:
        return self.registry.read(hold_id)[0]

    def list(self) -> list[dict[str, Any]]:
        return sorted(self.registry.all(), key=lambda h: str(h.get("created_at")))


def owning_case(state: StateStore, hold: Mapping[str, Any]) -> str | None:
    """The case that placed ``hold`` (its case document lists it), else None: a plain
    hold's ``case_id`` is only a label."""
    case_id = hold.get("case_id")
    if not isinstance(case_id, str) or not case_id or "/" in case_id:
        return None
    value = state.get(case_key(case_id))
    if value is None:
        return None
    return case_id if hold.get("id") in (json.loads(value.value).get("holds") or []) else None


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A hold without its (possibly long) item list, for listings and API answers."""
    items = doc.get("items", {})
    kinds: dict[str, int] = {}
    for item in items.values():
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    return {
        **{k: v for k, v in doc.items() if k not in ("items", "slots")},
        # True while part of its family pass is left to the holds-family job.
        "applying": bool(doc.get("applying")),
        "held_versions": len(items),
        "held_by_kind": kinds,
    }


def _dump(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
