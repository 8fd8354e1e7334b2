"""Cases: create, read, change scope, hold the scope, close and reopen, with a chain of
custody. No HTTP here: ``archiver.api.routes.cases`` parses and answers.

Number scope is enforced here, for every caller (API, CLI, the export job): an actor
whose token is scoped to numbers sees and acts on a case only when the case's numbers
are all its own (``visible``), and a case's numbers can never name a number outside the
acting token's scope (``archiver.cases.model.resolve``). An invisible case is reported
exactly as a missing one (``case_not_found``), so a scoped token cannot learn it exists.

Every change is written to the case's chain of custody (``cases-custody/<id>/…``, one
write-once entry each: who, when, what, counts) and recorded as an audit event
(``archiver.audit``); the export job reports through ``export_requested`` and
``export_finished``.

Errors: NotFound ``case_not_found``; Conflict ``case_closed``, ``case_not_closed``;
InvalidInput ``case_scope_empty`` and the checks of ``archiver.cases.model``; Forbidden
``case_number_forbidden``; PreconditionFailed when the CAS loses too often.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from archiver.audit import SYSTEM, Actor, AuditAction
from archiver.cases.bates import BatesAllocator
from archiver.cases.model import (
    CASE_ID,
    Custodians,
    Scope,
    check_contacts,
    check_text,
    erased_marker,
    is_erased,
    resolve,
    scope_query,
)
from archiver.cases.scope import SpooledSet, scope_documents, scope_request, walk_scope
from archiver.errors import Conflict, InvalidInput, NotFound
from archiver.keyspace import (
    CASES_PREFIX,
    case_key,
    custody_key,
    custody_prefix,
    erasures_of,
)
from archiver.records.model import iso
from archiver.retention.attachments import Attachment
from archiver.retention.common import StoredRecord, record_by_id
from archiver.retention.holds import (
    OPEN_STATUSES,
    HoldRegistry,
    HoldScope,
    HoldService,
    summary,
)
from archiver.store.errors import PreconditionFailed
from archiver.store.port import StateStore
from search.port import SearchIndex, SearchRequest

_CAS_TRIES = 30
_HOLD_BATCH = 500
_ATTACH_PAGE = 1000
_LINK_READERS = 8  # threads listing the media links of a page of messages
# A custodian contact's reference (``contact_refs`` of the case): what custody entries and
# audit events name instead of the contact, so an erasure can make it unreadable.
_REF = re.compile(r"cref_[a-z2-7]{16}")


class Auditor(Protocol):
    """The part of ``archiver.audit.AuditTrail`` a case needs."""

    def record(self, action: AuditAction, actor: Actor, *, concerns: Any = None,
               **details: Any) -> dict[str, Any]: ...  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaseInput:
    """A new case, or (for ``update``) the fields to change: ``None`` keeps a field."""

    name: str | None = None
    matter_number: str | None = None
    description: str | None = None
    custodians: Custodians | None = None
    scope: Scope | None = None


def covers(token_numbers: Sequence[str] | None, numbers: Sequence[str] | None) -> bool:
    """``archiver.auth.Principal.covers``: an unscoped token covers every case; a scoped
    one only cases whose numbers are a non-empty subset of its own."""
    if token_numbers is None:
        return True
    return bool(numbers) and set(numbers or ()) <= set(token_numbers)


class CaseService:
    def __init__(
        self,
        *,
        state: StateStore,
        index: SearchIndex,
        holds: HoldService,
        audit: Auditor | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        scratch: Callable[[], Path] | None = None,
    ) -> None:
        self.state = state
        self.index = index
        self.holds = holds
        self.registry: HoldRegistry = holds.registry
        self.audit = audit
        self.clock = clock
        self.bates = BatesAllocator(state)
        # Where the scope walk's set (record ids, message refs) is made: the job spool's
        # process folder, wired by the runtime (None: the system temp folder).
        self.scratch = scratch

    # -- reading ------------------------------------------------------------------------
    def _read(self, case_id: str) -> tuple[dict[str, Any], str]:
        value = self.state.get(case_key(case_id)) if CASE_ID.fullmatch(case_id) else None
        if value is None:
            raise NotFound(f"no case {case_id}", code="case_not_found")
        return dict(json.loads(value.value)), value.token

    def get(self, case_id: str, actor: Actor) -> dict[str, Any]:
        """The case, if ``actor``'s token may see it; else NotFound as for a missing one."""
        doc, _ = self._read(case_id)
        if not covers(actor.numbers, doc.get("numbers")):
            raise NotFound(f"no case {case_id}", code="case_not_found")
        return doc

    def all(self, actor: Actor) -> list[dict[str, Any]]:
        out = []
        for key in self.state.list(CASES_PREFIX):
            value = self.state.get(key)
            if value is None:
                continue
            doc = json.loads(value.value)
            if covers(actor.numbers, doc.get("numbers")):
                out.append(doc)
        return sorted(out, key=lambda d: (str(d.get("created_at")), str(d["id"])))

    def custody(self, case_id: str, actor: Actor) -> list[dict[str, Any]]:
        """The chain of custody, each contact reference shown as the case names it now:
        the contact, or its erased marker once an erasure took it."""
        refs = self.get(case_id, actor).get("contact_refs") or {}
        out = []
        for key in self.state.list(custody_prefix(case_id)):
            value = self.state.get(key)
            if value is not None:
                text = _REF.sub(lambda m: str(refs.get(m.group(0), m.group(0))),
                                value.value.decode())  # fmt: skip
                out.append(json.loads(text))
        return out

    def holds_of(self, doc: Mapping[str, Any]) -> list[dict[str, Any]]:
        out = []
        for hold_id in doc.get("holds") or []:
            with contextlib.suppress(NotFound):
                out.append(summary(self.registry.read(hold_id)[0]))
        return out

    # -- changing -----------------------------------------------------------------------
    def create(self, data: CaseInput, actor: Actor) -> dict[str, Any]:
        name = check_text(data.name, name="name", limit=200, required=True)
        matter = check_text(data.matter_number, name="matter_number", limit=100, required=True)
        description = check_text(data.description, name="description", limit=4000,
                                 required=False)  # fmt: skip
        custodians, scope = resolve(data.custodians or Custodians(), data.scope or Scope(),
                                    token_numbers=actor.numbers)  # fmt: skip
        case_id = "case_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()
        now = iso(self.clock())
        refs = _with_refs({}, custodians.contacts)
        doc: dict[str, Any] = {
            "id": case_id, "name": name, "matter_number": matter, "description": description,
            "custodians": custodians.to_json(), "contact_refs": refs, "scope": scope.to_json(),
            "numbers": None if scope.numbers is None else list(scope.numbers),
            "status": "open", "holds": [], "created_at": now, "created_by": actor.name,
            "updated_at": now, "updated_by": actor.name, "version": 1,
        }  # fmt: skip
        self.state.put(case_key(case_id), _dump(doc), if_absent=True)
        self._event(doc, actor, "created", AuditAction.CASE_CREATED,
                    details={"name": name, "matter_number": matter,
                             "custodians": _by_ref(custodians, refs).to_json(),
                             "scope": doc["scope"]},
                    counts={"custodians": len(custodians.numbers) + len(custodians.contacts)})
        return doc

    def update(self, case_id: str, data: CaseInput, actor: Actor) -> dict[str, Any]:
        """Change name, description, custodians or scope of an open case. Holds already
        placed stay as they are (hold the new scope to hold it)."""
        current = self.get(case_id, actor)
        _require_open(current)
        name = check_text(data.name, name="name", limit=200, required=False)
        matter = check_text(data.matter_number, name="matter_number", limit=100,
                            required=False)  # fmt: skip
        description = check_text(data.description, name="description", limit=4000,
                                 required=False)  # fmt: skip
        kept = [c for c in (current.get("custodians") or {}).get("contacts") or []
                if is_erased(c)]  # fmt: skip
        custodians, scope = resolve(
            data.custodians or Custodians.from_json(current["custodians"]),
            data.scope or Scope.from_json(current["scope"]),
            token_numbers=actor.numbers, kept=kept,
        )
        now = iso(self.clock())

        def change(d: dict[str, Any]) -> dict[str, Any]:
            _require_open(d)
            d = {**d, "custodians": custodians.to_json(), "scope": scope.to_json(),
                 "contact_refs": _with_refs(d.get("contact_refs") or {}, custodians.contacts),
                 "numbers": None if scope.numbers is None else list(scope.numbers),
                 "updated_at": now, "updated_by": actor.name,
                 "version": int(d.get("version", 1)) + 1}  # fmt: skip
            for field, value in (("name", name), ("matter_number", matter),
                                 ("description", description)):  # fmt: skip
                if value is not None:
                    d[field] = value
            return d

        before = current
        doc = self._update(case_id, actor, change)
        changed = sorted(k for k in ("name", "matter_number", "description", "custodians",
                                     "scope") if before.get(k) != doc.get(k))  # fmt: skip
        self._event(doc, actor, "scope_updated", AuditAction.CASE_UPDATED,
                    details={"changed": changed, "scope": doc["scope"],
                             "custodians": _by_ref(custodians, doc["contact_refs"]).to_json(),
                             "previous_scope": before["scope"]},
                    counts={"fields_changed": len(changed)})  # fmt: skip
        return doc

    def hold_scope(self, case_id: str, actor: Actor, *, reason: str | None) -> dict[str, Any]:
        """Place a hold on the case's scope through the holds machinery
        (``archiver.retention.holds``): the scope's query within the case's numbers (later
        arrivals that match are held as they are indexed), plus the families of its hits
        (``archiver.cases.scope``). The hold carries the case id and is recorded on the
        case. Raises Conflict ``case_closed`` and InvalidInput ``case_scope_empty``."""
        doc = self.get(case_id, actor)
        _require_open(doc)
        reason = check_text(reason, name="reason", limit=2000, required=False)
        scope = Scope.from_json(doc["scope"])
        custodians = Custodians.from_json(doc["custodians"])
        query = scope_query(custodians, scope)
        if not query and scope.numbers:
            query = " OR ".join(f'number:"{n}"' for n in scope.numbers)
        if not query:
            raise InvalidInput("the case's scope names nothing to hold (no query, dates, "
                             "contacts or numbers)", code="case_scope_empty")  # fmt: skip
        numbers = None if scope.numbers is None else list(scope.numbers)
        hold = self.holds.place(HoldScope(query=query), case_id=case_id, reason=reason,
                                by=actor.name, numbers=numbers)  # fmt: skip
        family = [rid for rid, is_family in walk_scope(self.index, doc,
                                                       directory=self._scratch_dir())
                  if is_family]  # fmt: skip
        for start in range(0, len(family), _HOLD_BATCH):
            records = _records(self.registry, family[start:start + _HOLD_BATCH])
            self.registry.hold_records(hold["id"], records)
        out = summary(self.registry.read(hold["id"])[0])
        now = iso(self.clock())
        updated = self._update(case_id, actor, lambda d: {
            **d, "holds": [*d.get("holds", []), hold["id"]], "updated_at": now,
            "contact_refs": _with_refs(d.get("contact_refs") or {}, custodians.contacts),
            "updated_by": actor.name, "version": int(d.get("version", 1)) + 1})  # fmt: skip
        # The custody entry names the contacts by reference (the hold itself needs them).
        named = scope_query(_by_ref(custodians, updated["contact_refs"]), scope) or query
        self._event(updated, actor, "hold_placed", AuditAction.CASE_HOLD_PLACED,
                    details={"hold_id": hold["id"], "query": named, "numbers": numbers,
                             "reason": reason, "held_by_kind": out["held_by_kind"]},
                    counts={"held_versions": out["held_versions"],
                            "family_records": len(family)})  # fmt: skip
        return out

    def close(self, case_id: str, actor: Actor, *, release_holds: bool = False,
              reason: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Close an open case. Its holds stay placed unless ``release_holds`` is true;
        then exactly the holds this case placed are released (``HoldRegistry.release``
        keeps a version another open hold covers). Raises Conflict ``case_closed``."""
        doc = self.get(case_id, actor)
        _require_open(doc)
        reason = check_text(reason, name="reason", limit=2000, required=False)
        released: list[str] = []
        if release_holds:
            for hold_id in doc.get("holds") or []:
                if self._release(doc, actor, hold_id) is not None:
                    released.append(hold_id)
        now = iso(self.clock())

        def change(d: dict[str, Any]) -> dict[str, Any]:
            _require_open(d)
            return {**d, "status": "closed", "closed_at": now, "closed_by": actor.name,
                    "close_reason": reason, "updated_at": now, "updated_by": actor.name,
                    "version": int(d.get("version", 1)) + 1}  # fmt: skip

        closed = self._update(case_id, actor, change)
        # The holds still open after this call (released earlier ones are not "kept").
        kept = [h for h in closed.get("holds") or [] if self._is_open(h)]
        self._event(closed, actor, "closed", AuditAction.CASE_CLOSED,
                    details={"release_holds": release_holds, "released_holds": released,
                             "kept_holds": kept, "reason": reason},
                    counts={"holds_released": len(released), "holds_kept": len(kept)})
        return closed

    def release_hold(self, case_id: str, hold_id: str, actor: Actor, *,
                     reason: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Release one hold this case placed (open or closed case), with custody and audit
        ``hold_released``: the only way a case's hold is released besides ``close``.
        Raises NotFound ``hold_not_found`` for a hold that is not this case's."""
        doc = self.get(case_id, actor)
        reason = check_text(reason, name="reason", limit=2000, required=False)
        if hold_id not in (doc.get("holds") or []):
            raise NotFound(f"case {case_id} has no hold {hold_id}", code="hold_not_found")
        done = self._release(doc, actor, hold_id, reason=reason)
        if done is None:  # already released: nothing changed, nothing to record
            done = self.registry.read(hold_id)[0]
        return summary(done)

    def _is_open(self, hold_id: str) -> bool:
        try:
            return self.registry.read(hold_id)[0].get("status") in OPEN_STATUSES
        except NotFound:
            return False

    def _release(self, doc: Mapping[str, Any], actor: Actor, hold_id: str, *,
                 reason: str | None = None) -> dict[str, Any] | None:  # fmt: skip
        """Release a hold of this case and write its custody entry; None when it is not
        this case's or already released."""
        try:
            hold, _ = self.registry.read(hold_id)
        except NotFound:
            return None
        if hold.get("case_id") != doc["id"] or hold.get("status") == "released":
            return None
        done = self.registry.release(hold_id, by=actor.name)
        self._event(doc, actor, "hold_released", AuditAction.CASE_HOLD_RELEASED,
                    details={"hold_id": hold_id, "reason": reason},
                    counts={"released_versions": done.get("released_count", 0),
                            "kept_by_other_holds": done.get("kept_by_other_holds", 0)})
        return done

    def reopen(self, case_id: str, actor: Actor) -> dict[str, Any]:
        """Reopen a closed case (its released holds stay released: hold the scope again).
        Raises Conflict ``case_not_closed``."""
        doc = self.get(case_id, actor)
        if doc.get("status") != "closed":
            raise Conflict(f"case {case_id} is not closed", code="case_not_closed")
        now = iso(self.clock())

        def change(d: dict[str, Any]) -> dict[str, Any]:
            if d.get("status") != "closed":
                raise Conflict(f"case {case_id} is not closed", code="case_not_closed")
            return {**d, "status": "open", "reopened_at": now, "reopened_by": actor.name,
                    "updated_at": now, "updated_by": actor.name,
                    "version": int(d.get("version", 1)) + 1}  # fmt: skip

        opened = self._update(case_id, actor, change)
        self._event(opened, actor, "reopened", AuditAction.CASE_REOPENED, details={},
                    counts={"holds": len(opened.get("holds") or [])})
        return opened

    # -- what erasure calls ------------------------------------------------------------
    def erase_custodians(self, phone_number_id: str, subjects: Sequence[str],
                         is_person: Callable[[str], bool]) -> list[str]:  # fmt: skip
        """Erasure's hook (``ErasureService.job_redactors``, wired by the runtime): in every
        case covering ``phone_number_id``, each custodian contact ``is_person`` says is the
        erased person (it resolves there to one of ``subjects``) is replaced, in the case's
        custodians and its reference table, by the marker ``erased:<erasure id>``; custody
        entries written before references existed are rewritten the same way; released
        holds of the case forget it from their stored query. Custody entry and audit event
        ``custodian_erased`` name only references and the erasure. Idempotent (a second
        run finds nothing left). Returns the ids of the cases changed."""
        marker = erased_marker(self._erasure_id(subjects))
        changed: list[str] = []
        for key in list(self.state.list(CASES_PREFIX)):
            value = self.state.get(key)
            if value is None:
                continue
            doc = json.loads(value.value)
            numbers = doc.get("numbers")
            if numbers is not None and phone_number_id not in numbers:
                continue  # the person's data at another number is not erased
            contacts = (doc.get("custodians") or {}).get("contacts") or []
            named = {*contacts, *(doc.get("contact_refs") or {}).values()}
            gone = sorted(c for c in named if not is_erased(c) and is_person(c))
            if not gone:
                continue
            self._erase_in_case(str(doc["id"]), gone, marker)
            changed.append(str(doc["id"]))
        return changed

    def _erase_in_case(self, case_id: str, gone: Sequence[str], marker: str) -> None:
        def swap(c: str) -> str:
            return marker if c in gone else c

        def change(d: dict[str, Any]) -> dict[str, Any]:
            custodians = dict(d.get("custodians") or {})
            contacts = list(dict.fromkeys(swap(c) for c in custodians.get("contacts") or []))
            refs = {r: swap(c) for r, c in (d.get("contact_refs") or {}).items()}
            for c in gone:  # a contact named before references existed gets one now
                if c not in (d.get("contact_refs") or {}).values():
                    refs["cref_" + base64.b32encode(secrets.token_bytes(10)).decode()
                         .lower()] = marker  # fmt: skip
            return {**d, "custodians": {**custodians, "contacts": contacts},
                    "contact_refs": refs, "version": int(d.get("version", 1)) + 1}

        doc = self._update(case_id, SYSTEM, change)
        self._forget_in_history(doc, gone, marker)
        refs = sorted(r for r, c in doc["contact_refs"].items() if c == marker)
        self._event(doc, SYSTEM, "custodian_erased", AuditAction.CASE_CUSTODIAN_ERASED,
                    details={"erasure": marker, "contacts": refs},
                    counts={"contacts_erased": len(gone)})  # fmt: skip

    def _forget_in_history(self, doc: Mapping[str, Any], gone: Sequence[str],
                           marker: str) -> None:  # fmt: skip
        """Custody entries written before references existed named contacts themselves,
        and a released hold's stored query still names them: both are working state, so
        the contact is replaced by the marker (an open hold keeps its query: it still
        catches arrivals, and one holding the person refuses the erasure)."""
        pattern = re.compile(r"(?<![A-Za-z0-9._-])(?:" + "|".join(map(re.escape, gone))
                             + r")(?![A-Za-z0-9._-])")  # fmt: skip
        for key in list(self.state.list(custody_prefix(str(doc["id"])))):
            value = self.state.get(key)
            if value is None:
                continue
            text = value.value.decode()
            new = pattern.sub(marker, text)
            if new != text:
                with contextlib.suppress(PreconditionFailed):  # rewritten meanwhile
                    self.state.put(key, new.encode(), if_match=value.token)
        for hold_id in doc.get("holds") or []:
            with contextlib.suppress(NotFound):
                hold, _ = self.registry.read(hold_id)
                query = str((hold.get("scope") or {}).get("query") or "")
                if hold.get("status") == "released" and pattern.search(query):
                    self.registry.update(hold_id, lambda h: {
                        **h, "scope": {**h["scope"],
                                       "query": pattern.sub(marker, h["scope"]["query"])}})

    def _erasure_id(self, subjects: Sequence[str]) -> str:
        """The id of the erasure procedure running for ``subjects`` (the hook runs inside
        its ``artifacts`` step), else ``unknown``."""
        running = []
        for subject in subjects:
            for key in self.state.list(erasures_of(subject)):
                value = self.state.get(key)
                if value is not None:
                    doc = json.loads(value.value)
                    if doc.get("status") == "running":
                        running.append(str(doc["id"]))
        return max(running) if running else "unknown"

    # -- what the export job calls ------------------------------------------------------
    def records_in_scope(self, case_id: str, actor: Actor) -> Iterator[str]:
        """Record ids of the case's scope and their families (``archiver.cases.scope``),
        each followed (per page of ids) by the media link records of its attachments
        (``media_link`` / ``media_missing``: records of the log, not index documents).
        The blobs themselves are read with ``attachments``."""
        for record_id, _ in self.scope_documents(case_id, actor):
            yield record_id

    def scope_documents(self, case_id: str, actor: Actor
                        ) -> Iterator[tuple[str, dict[str, Any] | None]]:  # fmt: skip
        """As ``records_in_scope``, each id with the index document the walk found it in
        (None for link records and ids folded into another document)."""
        yield from self._with_links(self.get(case_id, actor))

    def scope_request(self, case_id: str, actor: Actor) -> SearchRequest:
        """The case's scope as one search (query, dates, contacts; numbers as the scope)."""
        return scope_request(self.get(case_id, actor))

    def contact_request(self, contact: str, numbers: Sequence[str] | None) -> SearchRequest:
        """The scope of a subject access export of ``contact`` within ``numbers``."""
        check_contacts([contact])
        return scope_request(_contact_case(contact, numbers))

    def contact_records(self, contact: str, numbers: Sequence[str] | None) -> Iterator[str]:
        """Every record of one contact (wa_id or BSUID) within ``numbers`` (None: every
        number), with families and media link records, as for a case whose custodian is
        that contact (a subject access export, GDPR Art. 15). Raises BadRequest
        ``case_contact_invalid``."""
        for record_id, _ in self.contact_documents(contact, numbers):
            yield record_id

    def contact_documents(self, contact: str, numbers: Sequence[str] | None
                          ) -> Iterator[tuple[str, dict[str, Any] | None]]:  # fmt: skip
        """As ``contact_records``, with documents as ``scope_documents``."""
        check_contacts([contact])
        yield from self._with_links(_contact_case(contact, numbers))

    def _with_links(self, doc: Mapping[str, Any]
                    ) -> Iterator[tuple[str, dict[str, Any] | None]]:  # fmt: skip
        """The scope's records, each page followed by its media link records; every id
        once (the walk's on-disk set also takes the link ids: memory stays flat)."""
        with SpooledSet(self._scratch_dir()) as seen, ThreadPoolExecutor(_LINK_READERS) as pool:
            page: list[str] = []
            for record_id, found in scope_documents(self.index, doc, seen):
                page.append(record_id)
                yield record_id, found
                if len(page) >= _ATTACH_PAGE:
                    yield from self._links(page, seen, pool)
                    page = []
            yield from self._links(page, seen, pool)

    def _links(self, record_ids: list[str], seen: SpooledSet, pool: ThreadPoolExecutor
               ) -> Iterator[tuple[str, dict[str, Any] | None]]:  # fmt: skip
        # attachments_of lists working state once per message: slices read in parallel.
        step = -(-len(record_ids) // _LINK_READERS) or 1
        slices = [record_ids[i:i + step] for i in range(0, len(record_ids), step)]
        for found in pool.map(self.attachments, slices):
            for a in found:
                if seen.add(a.link_id):
                    yield a.link_id, None

    def attachments(self, record_ids: Sequence[str]) -> list[Attachment]:
        """The logged attachments (media link record, blob) of messages ``record_ids``."""
        return self.registry.attachments_of(record_ids)

    def allocate_bates(self, case_id: str, actor: Actor, item_ids: Sequence[str], *,
                       start: int = 1) -> dict[str, int]:  # fmt: skip
        """Stable Bates numbers for ``item_ids`` in this case (``archiver.cases.bates``)."""
        self.get(case_id, actor)
        return self.bates.allocate(case_id, item_ids, start=start)

    def export_requested(self, case_id: str, actor: Actor, *, export_id: str,
                         options: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        """Custody + audit ``export:requested`` (the export job's first act)."""
        doc = self.get(case_id, actor)
        custodians = _by_ref(Custodians.from_json(doc["custodians"]),
                             doc.get("contact_refs") or {})  # fmt: skip
        return self._event(doc, actor, "export_requested", AuditAction.EXPORT_REQUESTED,
                           details={"export_id": export_id, "options": dict(options),
                                    "scope": doc["scope"], "custodians": custodians.to_json()},
                           counts={})  # fmt: skip

    def export_finished(self, case_id: str, actor: Actor, *, export_id: str, state: str,
                        counts: Mapping[str, int], **details: Any) -> dict[str, Any]:
        """Custody + audit ``export:finished`` (``state``: done / failed; ``counts``:
        records, attachments, files, …; ``details``: e.g. the manifest's SHA-256). Not
        refused for a closed case: an export that ran must always be accounted for."""
        doc, _ = self._read(case_id)
        return self._event(doc, actor, "export_finished", AuditAction.EXPORT_FINISHED,
                           details={"export_id": export_id, "state": state, **details},
                           counts=dict(counts))  # fmt: skip

    # -- plumbing -----------------------------------------------------------------------
    def _scratch_dir(self) -> str | None:
        return None if self.scratch is None else str(self.scratch())

    def _update(self, case_id: str, actor: Actor,
                change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        for _ in range(_CAS_TRIES):
            doc, token = self._read(case_id)
            if not covers(actor.numbers, doc.get("numbers")):
                raise NotFound(f"no case {case_id}", code="case_not_found")
            new = change(doc)
            try:
                self.state.put(case_key(case_id), _dump(new), if_match=token)
                return new
            except PreconditionFailed:
                continue
        raise PreconditionFailed(f"case {case_id}: too much contention")

    def _event(self, doc: Mapping[str, Any], actor: Actor, what: str, action: AuditAction, *,
               details: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any]:
        """One chain-of-custody entry (written first: the case's own record) and one
        audit event with the same content."""
        entry = {
            "case_id": doc["id"], "at": iso(self.clock()), "action": what,
            "actor": {"token_id": actor.token_id, "name": actor.name, "role": actor.role},
            "details": dict(details), "counts": dict(counts),
        }  # fmt: skip
        stamp = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        self.state.put(custody_key(str(doc["id"]), stamp), _dump(entry), if_absent=True)
        if self.audit is not None:
            self.audit.record(action, actor, concerns=doc.get("numbers") or [],
                              case_id=doc["id"], custody=what, counts=dict(counts),
                              **{k: v for k, v in details.items() if k not in ("case_id",)})
        return entry


def _with_refs(refs: Mapping[str, str], contacts: Sequence[str]) -> dict[str, str]:
    """``refs`` plus a new reference for each contact it lacks. It only grows: a contact
    removed from the case keeps its reference, which its older custody entries name."""
    out = dict(refs)
    named = set(out.values())
    for c in contacts:
        if c not in named:
            out["cref_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()] = c
            named.add(c)
    return out


def _by_ref(custodians: Custodians, refs: Mapping[str, str]) -> Custodians:
    """The custodians with each contact replaced by its reference (a contact without one,
    in a case written before references existed, stays as it is)."""
    by_value = {v: k for k, v in refs.items()}
    return Custodians(custodians.numbers, tuple(by_value.get(c, c) for c in custodians.contacts))


def _contact_case(contact: str, numbers: Sequence[str] | None) -> dict[str, Any]:
    """A case-shaped scope: every record of one contact within ``numbers``."""
    return {"scope": Scope(numbers=None if numbers is None else tuple(numbers)).to_json(),
            "custodians": Custodians(contacts=(contact,)).to_json()}


def _require_open(doc: Mapping[str, Any]) -> None:
    if doc.get("status") != "open":
        raise Conflict(f"case {doc.get('id')} is closed", code="case_closed")


def _records(registry: HoldRegistry, record_ids: Sequence[str]) -> list[StoredRecord]:
    out = []
    for rid in record_ids:
        with contextlib.suppress(NotFound):  # disposed since it was indexed
            out.append(record_by_id(registry.objects, rid))
    return out


def _dump(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
