"""Consent: recording changes from the API, and the state "as of" any instant.

Three sources write ``consent`` records (same header shape everywhere, see
``archiver.ingest.consent``): inbound STOP/START keywords and ``user_preferences``
webhooks (derived by the processor), and ``POST /v1/consent`` (written here directly
as a record plus its ``record`` log leaf, synchronously: a 201 means durable).

The state is a **derived, rebuildable view** kept in working state: ``ConsentView``
follows the proof log from its own cursor (``views/consent/cursor``), reads each
``record`` leaf whose ``event`` is ``consent``, and appends the change to
``views/consent/<phone_number_id>/<subject>/<purpose>`` (idempotent by leaf index).
A query first catches the view up, then picks the last change whose effective time
(``occurred_at``, else ``captured_at``; ties by leaf order) is at or before ``as_of``.
Deleting ``views/consent/`` and querying again rebuilds it from the log.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785

from archiver.indexing.logged import record_of_entry
from archiver.ingest.consent import ConsentStatus
from archiver.ingest.ports import LoggedHook, PolicyDecider
from archiver.keys.store import KeyStore
from archiver.keyspace import CONSENT_VIEW_CURSOR_KEY, consent_view_key
from archiver.ledger.entry import Entry, EntryKind, make_entry
from archiver.ledger.follow import follow_to_end
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.records.model import Record, iso
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.errors import PreconditionFailed
from archiver.store.port import ObjectStore, StateStore, lock_at_least
from archiver.subjects.aliases import contact_aliases, normalize_number
from archiver.subjects.identity import Identities, person_subjects
from archiver.subjects.identity import resolve_subject as _resolve_person
from archiver.subjects.traces import leave_trace
from policies.model import RecordFacts

log = get_logger("archiver.consent")

STATES = (ConsentStatus.OPT_IN, ConsentStatus.OPT_OUT)


# -- working-state helpers (shared with archiver.coexistence) ----------------------------


def update_json(state: StateStore, key: str, change: Callable[[Any], Any], default: Any) -> Any:
    """Compare-and-swap read-modify-write of one JSON value in working state."""
    for _ in range(20):
        current = state.get(key)
        value = json.loads(current.value) if current else default
        new = change(value)
        try:
            raw = json.dumps(new, sort_keys=True).encode()
            if current is None:
                state.put(key, raw, if_absent=True)
            else:
                state.put(key, raw, if_match=current.token)
            return new
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"{key}: too much contention")


# -- subjects -----------------------------------------------------------------------------


def contact_alias(contact: str) -> str:
    """A phone number (any punctuation) → ``wa:<digits>``; anything else is a BSUID."""
    text = contact.strip()
    if re.fullmatch(r"\+?[0-9 ().-]{5,}", text):
        return "wa:" + normalize_number(text)
    return "bsuid:" + text


def resolve_subject(state: StateStore, pseudo: Pseudonymizer, business: str, contact: str) -> str:
    """The canonical subject id of this contact of this business number: the same for
    the person's phone number and BSUID once Meta linked them, whatever the order."""
    return _resolve_person(state, pseudo, business, contact)


# -- the view -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentState:
    state: ConsentStatus
    since: str | None
    record_id: str | None
    source: str | None
    channel: str | None
    changes: int  # changes known up to as_of


def state_as_of(changes: list[dict[str, Any]], as_of: datetime) -> ConsentState:
    """The last change effective at or before ``as_of`` (pure)."""
    known = [c for c in changes if datetime.fromisoformat(c["at"]) <= as_of]
    if not known:
        return ConsentState(ConsentStatus.UNKNOWN, None, None, None, None, 0)
    last = max(known, key=lambda c: (datetime.fromisoformat(c["at"]), c["leaf"]))
    return ConsentState(
        ConsentStatus(last["state"]),
        last["at"],
        last["record_id"],
        last.get("source"),
        last.get("channel"),
        len(known),
    )


class ConsentView:
    def __init__(self, *, log: LogAppender, objects: ObjectStore, state: StateStore) -> None:
        self.log = log
        self.objects = objects
        self.state = state

    def catch_up(self) -> int:
        return follow_to_end(self.log, self.state, CONSENT_VIEW_CURSOR_KEY, self._handle)

    def _handle(self, leaf: int, entry: Entry) -> None:
        if entry.kind is not EntryKind.RECORD or entry.fields.get("event") != "consent":
            return
        record = record_of_entry(self.objects, entry)
        if record is None:
            return
        header = record.header
        consent = header.get("consent") or {}
        business = (header.get("business") or {}).get("phone_number_id")
        if not business or not header.get("subject") or consent.get("state") not in STATES:
            return
        change = {
            "leaf": leaf,
            "at": header.get("occurred_at") or header.get("captured_at"),
            "state": consent["state"],
            "record_id": record.record_id,
            "source": consent.get("source"),
            "channel": consent.get("channel"),
        }

        def add(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if any(c["leaf"] == leaf for c in changes):
                return changes
            return [*changes, change]

        key = consent_view_key(str(business), str(header["subject"]), str(consent.get("purpose")))
        update_json(self.state, key, add, [])

    def changes(self, business: str, subject: str, purpose: str) -> list[dict[str, Any]]:
        value = self.state.get(consent_view_key(business, subject, purpose))
        return list(json.loads(value.value)) if value else []

    def person_changes(self, business: str, subject: str, purpose: str) -> list[dict[str, Any]]:
        """The changes of every subject id of ``subject``'s person (records keep the id
        they were written under; a later merge joins them here, at read time)."""
        out: list[dict[str, Any]] = []
        for member in person_subjects(self.state, subject):
            out.extend(self.changes(business, member, purpose))
        return out


# -- recording ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentChange:
    phone_number_id: str
    contact: str
    purpose: str
    state: ConsentStatus  # OPT_IN or OPT_OUT
    channel: str
    evidence: str
    actor: str
    occurred_at: datetime | None


@dataclass(frozen=True, slots=True)
class Recorded:
    record_id: str
    leaf: int
    subject: str


class ConsentRecorder:
    """Writes an API consent change as a ``consent`` record and appends its leaf."""

    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        keys: KeyStore,
        log: LogAppender,
        pseudo: Pseudonymizer,
        policy: PolicyDecider,
        on_logged: LoggedHook,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.objects, self.state, self.keys, self.log = objects, state, keys, log
        self.pseudo, self.policy, self.clock = pseudo, policy, clock
        self.on_logged = on_logged  # Runtime.open wires retention's hold of new arrivals

    def record(self, change: ConsentChange, recorded_by: dict[str, Any]) -> Recorded:
        now = self.clock()
        business = change.phone_number_id
        # A contact never seen gets its alias registered (one alias links nothing), so a
        # later webhook naming it with its other ids finds this subject and merges it.
        aliases = contact_aliases(change.contact)
        ids = Identities(self.state)
        subject = ids.resolve(self.pseudo, business, aliases) or ids.register(
            self.pseudo, business, aliases[0]
        )
        content: dict[str, Any] = {
            "evidence": change.evidence,
            "actor": change.actor,
            "contact": change.contact,
            "recorded_by": recorded_by,
        }
        digest = hashlib.sha256(rfc8785.dumps(content)).hexdigest()
        dedup = "consent:api:" + uuid.uuid4().hex
        occurred = change.occurred_at or now
        decision = self.policy.decide(
            RecordFacts(
                business_number=None,
                phone_number_id=business,
                direction="none",
                origin="business_api",
                message_type=None,
                record_kind="consent",
                message_time=occurred,
                capture_time=now,
            )
        )
        header: dict[str, Any] = {
            "v": 1,
            "record_id": self.pseudo.record_id(business, dedup),
            "kind": "consent",
            "origin": "business_api",
            "direction": "none",
            "message_type": None,
            "business": {
                "phone_number_id": business,
                "display_phone_number": None,
                "waba_id": None,
            },
            "subject": subject,
            "conversation": self.pseudo.conversation(business, subject),
            "message_ref": None,
            "occurred_at": iso(occurred),
            "captured_at": iso(now),
            "raw": None,
            "content_mac": self.pseudo.content_mac(digest),
            "dedup": self.pseudo.token("d_", "dedup", business, dedup),
            "consent": {
                "purpose": change.purpose,
                "state": change.state,
                "channel": change.channel,
                "source": "api",
            },
            "policy": {
                "id": decision.policy_id,
                "retain_until": iso(decision.retain_until),
                "lock_mode": decision.lock_mode.value,
                "matched": list(decision.matched),
            },
            "flags": [],
        }
        data_key, key_event = self.keys.get_or_create(subject)
        # Before the record exists: a conversation hold finds it through this trace.
        leave_trace(self.state, header["conversation"], subject, "consent_api")
        record = Record.build(header, content, data_key=data_key.secret, key_id=data_key.key_id)
        put = self.objects.put(
            record.key,
            record.body,
            retention=lock_at_least(decision.lock_mode, decision.retain_until, self.clock()),
            content_type="application/json",
        )
        entries = []
        if key_event is not None:
            entries.append(
                make_entry(
                    EntryKind.KEY_CREATED,
                    time=now,
                    subject=subject,
                    key_id=key_event.get("key_id"),
                    event=key_event["kind"],
                ).data
            )
        entries.append(
            make_entry(
                EntryKind.RECORD,
                time=now,
                key=record.key,
                version_id=put.version_id,
                sha256=record.sha256,
                size=len(record.body),
                retain_until=decision.retain_until,
                record_id=record.record_id,
                event="consent",
                policy=decision.policy_id,
            ).data
        )
        leaves = self.log.append(entries)
        # A record arriving while a hold on its subject or conversation is open is held now,
        # as the processor holds its records (query holds: the index follower's hook).
        self.on_logged([(record.key, put.version_id)], [])
        return Recorded(record.record_id, leaves[-1], subject)
