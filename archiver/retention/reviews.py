"""Disposition reviews: a record whose policy says ``review`` waits in
``disposition/reviews/<record id>`` until enough *distinct people* approve deleting it.

An approval counts only when:

* the token is bound to a person (``archiver token create --person``): distinctness counts
  persons, never token ids or display names (two tokens named ``alice`` are not two
  people); a token without a person cannot approve (``approver_without_person``);
* the token can see the record (its business number is in the token's scope; a token
  that cannot see it is told the review does not exist, as for any other read);
* it is bound to the record's key **and version**: a later version at the same id (a
  record disposed and written again) gets a fresh review, and the old approvals do not
  count for it;
* it is logged: a ``disposition_approved`` leaf (key, version, record id, person, token
  id) is appended after the approval is saved; the API adds a ``disposition:approved``
  audit event.

The review document shows what the approvers decide on: the key and version, the
governing policy, the retention end the policy engine computes now and the store's lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from archiver.errors import Conflict, Forbidden, NotFound
from archiver.keyspace import REVIEWS_PREFIX
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.ports import LogAppender
from archiver.records.model import iso
from archiver.retention.common import StoredRecord, record_by_id
from archiver.store.errors import PreconditionFailed
from archiver.store.port import ObjectInfo, ObjectStore, StateStore
from policies.model import Decision

_CAS_TRIES = 20


class ReviewStatus(StrEnum):
    """``status`` of ``disposition/reviews/<record id>`` (stored: values never change)."""

    PENDING = "pending"
    APPROVED = "approved"


@dataclass(frozen=True, slots=True)
class Approver:
    """Who approves: the person a token is bound to, and what the token may see."""

    person: str | None
    token_id: str | None
    name: str
    numbers: tuple[str, ...] | None  # None: every business number


def approvals_for(doc: dict[str, Any], key: str, version_id: str) -> set[str]:
    """The distinct persons whose approvals are bound to ``key@version_id`` (pure)."""
    return {
        str(a["person"])
        for a in doc.get("approvals", [])
        if a.get("person") and a.get("key") == key and a.get("version_id") == version_id
    }


def review_doc(
    r: StoredRecord, decision: Decision, info: ObjectInfo, now: datetime
) -> dict[str, Any]:
    """A pending review of one record version."""
    return {
        "record_id": r.record_id, "key": r.key, "version_id": r.version_id,
        "phone_number_id": r.phone_number_id,
        "policy": decision.governing,
        "retain_until": iso(decision.retain_until),
        "store_retain_until": iso(info.retention.retain_until) if info.retention else None,
        "required": 2 if decision.disposition.two_person_approval else 1,
        "approvals": [], "status": ReviewStatus.PENDING, "queued_at": iso(now),
    }  # fmt: skip


def approved(
    state: StateStore, r: StoredRecord, decision: Decision, info: ObjectInfo, now: datetime,
    *, dry_run: bool,
) -> bool:
    """Whether ``r``'s version has its approvals; queues (or re-queues, for a new version)
    its review otherwise."""
    name = REVIEWS_PREFIX + r.record_id
    value = state.get(name)
    wanted = 2 if decision.disposition.two_person_approval else 1
    if value is not None:
        doc = json.loads(value.value)
        if doc.get("key") == r.key and doc.get("version_id") == r.version_id:
            required = max(int(doc.get("required", 1)), wanted)
            return len(approvals_for(doc, r.key, r.version_id)) >= required
    if dry_run:
        return False
    doc = review_doc(r, decision, info, now)
    try:
        if value is None:
            state.put(name, _dump(doc), if_absent=True)
        else:  # a new version at this id: approvals of the old one do not carry over
            doc["previous"] = {k: json.loads(value.value).get(k) for k in ("key", "version_id")}
            state.put(name, _dump(doc), if_match=value.token)
    except PreconditionFailed:
        pass  # queued by a concurrent run
    return False


def list_reviews(
    state: StateStore, status: str | None = ReviewStatus.PENDING
) -> list[dict[str, Any]]:
    out = []
    for key in state.list(REVIEWS_PREFIX):
        value = state.get(key)
        if value is None:
            continue
        doc = json.loads(value.value)
        if status is None or doc.get("status") == status:
            out.append(doc)
    return out


def approve_review(
    state: StateStore, record_id: str, *, approver: Approver, now: datetime,
    log: LogAppender | None = None, objects: ObjectStore | None = None,
) -> dict[str, Any]:
    """Add ``approver``'s approval to the pending review of ``record_id``, bound to the
    version under review, and log it. Raises Forbidden (``approver_without_person``),
    NotFound (no review, or one the approver's token cannot see), Conflict (the same
    person twice: ``review_same_approver``; nothing pending: ``review_not_pending``)."""
    for _ in range(_CAS_TRIES):
        value = state.get(REVIEWS_PREFIX + record_id)
        if value is None:
            raise NotFound(f"no disposition review for {record_id}", code="review_not_found")
        doc: dict[str, Any] = json.loads(value.value)
        number = doc.get("phone_number_id")
        if number is None and objects is not None:  # queued by an older version
            try:
                number = record_by_id(objects, record_id).phone_number_id
            except NotFound:
                number = None
        if approver.numbers is not None and number not in approver.numbers:
            raise NotFound(f"no disposition review for {record_id}", code="review_not_found")
        if not approver.person:
            raise Forbidden(
                "this token is not bound to a person, so it cannot approve a disposition "
                "(create one with `archiver token create --person ...`)",
                code="approver_without_person",
            )
        if doc.get("status") != ReviewStatus.PENDING:
            raise Conflict(f"the review of {record_id} is {doc.get('status')}",
                           code="review_not_pending")
        key, version = str(doc["key"]), str(doc["version_id"])
        if approver.person in approvals_for(doc, key, version):
            raise Conflict(
                f"{approver.person} already approved; a second, different person is needed",
                code="review_same_approver",
            )
        approval = {"person": approver.person, "token_id": approver.token_id,
                    "name": approver.name, "at": iso(now), "key": key, "version_id": version}
        doc["approvals"] = [*doc.get("approvals", []), approval]
        if len(approvals_for(doc, key, version)) >= int(doc["required"]):
            doc["status"] = ReviewStatus.APPROVED
        try:
            state.put(REVIEWS_PREFIX + record_id, _dump(doc), if_match=value.token)
        except PreconditionFailed:
            continue
        if log is not None:
            log.append([make_entry(
                EntryKind.DISPOSITION_APPROVED, time=now, key=key, version_id=version,
                record_id=record_id, person=approver.person, token_id=approver.token_id,
                required=int(doc["required"]),
            ).data])  # fmt: skip
        return doc
    raise PreconditionFailed(f"review {record_id}: too much contention")


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
