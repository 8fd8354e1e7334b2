"""Coexistence onboarding and health: the one-shot syncs, history progress, gaps.

* ``sync``: Meta allows ``POST /<PHONE_NUMBER_ID>/smb_app_data`` once per ``sync_type``
  within 24 h of onboarding (fixtures README §4): first ``smb_app_state_sync`` (contacts),
  then ``history``. Before each call a marker is written (``if_absent``) at
  ``coexistence/<id>/sync/<type>``, so a re-run — even after a crash mid-call — never
  calls twice; Meta's ``request_id`` is kept there and an audit event is recorded.
* History progress: a derived view following the log (cursor ``views/coexistence/cursor``)
  — every ``history_chunk`` record's phase, chunk order and progress (0–100, 100 =
  complete), and every number's last activity (newest ``captured_at`` of its records),
  in ``views/coexistence/<id>``. Rebuildable by deleting ``views/coexistence/``.
* History problems: every ``history_error`` record (Meta's ``errors[]`` on the history
  field) is kept in the view too; the report shows them as ``history.errors``, a
  ``history.state`` of ``declined`` (2593109: the business turned history sharing off in
  the Business App) or ``failed``, and a warning — history will not complete.
* Connection: Meta's ``account_update`` events (``PARTNER_REMOVED``, ``ACCOUNT_OFFBOARDED``,
  ``PARTNER_APP_UNINSTALLED``, ``ACCOUNT_RECONNECTED``, ...) kept per scope in the same
  view and mapped to numbers when read. The rule: an event naming a phone number
  (``value.phone_number``, Meta's display number; only ``PARTNER_REMOVED`` does) concerns
  the number whose records carry that ``display_phone_number`` (digits compared); an
  event naming only a WABA (``value.waba_info.waba_id``, else the entry id) concerns every
  number whose records carry that ``waba_id``. Mapping at read time makes the arrival
  order irrelevant: an event seen before the number's first message still applies. The
  number's state is the effect of its newest connecting / disconnecting event (by
  ``occurred_at``, then leaf); no such event means ``connected``. A disconnection is
  logged as a warning when the view meets it, and shown in the report's ``warnings``:
  from then on what the business writes in the phone app is no longer archived.
* Gaps: statuses whose message never arrived (status folds still parked by the indexer
  at ``index/folds/live/<target>`` older than ``orphan_hours``) and a number silent
  longer than ``ARCHIVER_SILENCE_ALERT_HOURS``. Both are logged as warnings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast
from urllib.parse import quote, unquote

from archiver.audit import Actor, AuditAction, AuditTrail
from archiver.consent import update_json
from archiver.errors import Conflict
from archiver.indexing.logged import record_of_entry
from archiver.indexing.recent import COEXISTENCE_READER, RecentObjects
from archiver.keys.errors import KeysError
from archiver.keys.store import KeyStore
from archiver.keyspace import (
    COEXISTENCE_SCOPE_PREFIX,
    COEXISTENCE_VIEW_CURSOR_KEY,
    COEXISTENCE_VIEW_PREFIX,
    LIVE_FOLDS_PREFIX,
    VIEW_CURSOR,
    coexistence_sync_key,
    record_key,
)
from archiver.ledger.entry import Entry, EntryKind
from archiver.ledger.follow import follow_window_to_end
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.records.model import Record, RecordError, iso
from archiver.store.errors import ObjectNotFound, PreconditionFailed
from archiver.store.port import ObjectStore, StateStore
from archiver.whatsapp.graph import GraphClient, GraphError

log = get_logger("archiver.coexistence")
# How often the running service follows the log into the view, so a disconnection is
# logged (and the metric moves) within seconds, not when someone next asks. Often enough
# that the records it reads are still in the process's recent cache (RecentObjects): at 15 s
# a history sync's records were evicted first and read back, a GET each.
VIEW_INTERVAL_S = 2.0
# Records of one window read side by side (GETs: latency, not CPU, bound).
_READERS = 8

SYNC_TYPES = ("smb_app_state_sync", "history")
# Meta's code for "History sync is turned off by the business from the WhatsApp Business
# App": the business declined sharing its history; no chunk will follow.
HISTORY_DECLINED = 2593109
ACCOUNT_KIND = "account_update"
# Meta's account_update events that end or restore the number's link to this archive.
DISCONNECTING = frozenset(
    {
        "PARTNER_REMOVED",
        "ACCOUNT_OFFBOARDED",
        "PARTNER_APP_UNINSTALLED",
        "ACCOUNT_DISABLED",
        "ACCOUNT_DELETED",
    }
)
CONNECTING = frozenset({"ACCOUNT_RECONNECTED", "PARTNER_ADDED", "PARTNER_APP_INSTALLED"})
# Kept in the history (the officer should see them) but the link is unchanged.
NOTABLE = frozenset({"ACCOUNT_VIOLATION", "ACCOUNT_RESTRICTION", "DISABLED_UPDATE"})
ACTIVITY_KINDS = frozenset(
    {
        "message",
        "echo",
        "status",
        "history_message",
        "history_media",
        "history_chunk",
        "history_error",
        "api_send",
        "contact_sync",
    }
)


class CoexistenceAction(StrEnum):
    # Not yet in archiver.audit.AuditAction (asked of its owner); same ``subject:action`` form.
    SYNC_REQUESTED = "coexistence:sync_requested"
    SYNC_FAILED = "coexistence:sync_failed"


class SyncStatus(StrEnum):
    """``status`` of a sync request (``coexistence/<number>/sync/<type>``; stored and
    shown by ``GET /v1/coexistence/...``: the values never change)."""

    CALLING = "calling"  # the Graph call is in flight (or crashed during it)
    REQUESTED = "requested"
    FAILED = "failed"
    UNKNOWN = "unknown"  # answered only: the request vanished while we looked
    NOT_REQUESTED = "not_requested"  # answered only: never requested


class Coexistence:
    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        keys: KeyStore,
        log: LogAppender,
        audit: AuditTrail,
        graph: GraphClient | None,
        silence_hours: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        recent: RecentObjects | None = None,
    ) -> None:
        self.objects, self.state, self.keys, self.log = objects, state, keys, log
        self.audit, self.graph, self.clock = audit, graph, clock
        # Records this process just wrote: the view takes them from here rather than
        # reading each one back (it reads every message-like record of the log).
        self.recent = recent
        self.silence = timedelta(hours=silence_hours)

    # -- the one-shot syncs -----------------------------------------------------------

    def sync(self, phone_number_id: str, actor: Actor) -> dict[str, dict[str, Any]]:
        """Request both syncs (those not yet requested). Returns the state of each.

        Raises Conflict when no Graph token is configured. A failed call is kept as
        ``failed`` and not retried automatically (Meta may have honoured it).
        """
        if self.graph is None:
            raise Conflict(
                "no Graph API token configured (ARCHIVER_GRAPH_TOKEN)", code="graph_not_configured"
            )
        out: dict[str, dict[str, Any]] = {}
        for sync_type in SYNC_TYPES:
            out[sync_type] = self._sync_one(phone_number_id, sync_type, actor)
        return out

    def _sync_one(self, phone_number_id: str, sync_type: str, actor: Actor) -> dict[str, Any]:
        assert self.graph is not None
        key = coexistence_sync_key(phone_number_id, sync_type)
        marker = {"status": SyncStatus.CALLING, "at": iso(self.clock())}
        try:
            token = self.state.put(key, json.dumps(marker).encode(), if_absent=True)
        except PreconditionFailed:
            current = self.state.get(key)
            return dict(json.loads(current.value)) if current else {"status": SyncStatus.UNKNOWN}
        try:
            request_id = self.graph.request_smb_app_data(
                phone_number_id,
                cast(Any, sync_type),  # one of SYNC_TYPES, checked by the client
            )
        except GraphError as exc:
            doc = {**marker, "status": SyncStatus.FAILED, "error": exc.code, "message": exc.message}
            self.state.put(key, json.dumps(doc).encode(), if_match=token)
            self._audit(
                CoexistenceAction.SYNC_FAILED,
                actor,
                phone_number_id=phone_number_id,
                sync_type=sync_type,
                error=exc.code,
            )
            log.warning("coexistence_sync_failed", sync_type=sync_type, error_code=exc.code)
            return doc
        doc = {**marker, "status": SyncStatus.REQUESTED, "request_id": request_id}
        self.state.put(key, json.dumps(doc).encode(), if_match=token)
        self._audit(
            CoexistenceAction.SYNC_REQUESTED,
            actor,
            phone_number_id=phone_number_id,
            sync_type=sync_type,
            request_id=request_id,
        )
        return doc

    def _audit(self, action: CoexistenceAction, actor: Actor, **details: Any) -> None:
        self.audit.record(
            AuditAction(action.value), actor, concerns=[details.get("phone_number_id")],
            **details,
        )  # fmt: skip

    def sync_state(self, phone_number_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for sync_type in SYNC_TYPES:
            value = self.state.get(coexistence_sync_key(phone_number_id, sync_type))
            out[sync_type] = (
                json.loads(value.value) if value else {"status": SyncStatus.NOT_REQUESTED}
            )
        return out

    # -- the view ---------------------------------------------------------------------

    def catch_up(self) -> int:
        return follow_window_to_end(
            self.log, self.state, COEXISTENCE_VIEW_CURSOR_KEY, self._handle_window
        )

    def _handle_window(self, start: int, entries: Sequence[Entry]) -> None:
        """One window of the log. The records it names are read side by side, and each
        number's view is changed once for the window with all of its records' changes in
        leaf order, not read and rewritten once per record: under load that per-record
        round trip pair kept the view minutes behind the log (and an account event's alert
        with it). The result is the same value as leaf by leaf: the same changes, in the
        same order, on each key; views of different keys are independent. Replaying the
        window (a crash before the cursor moves) changes nothing, as before."""
        wanted = [
            (start + offset, entry)
            for offset, entry in enumerate(entries)
            if entry.kind is EntryKind.RECORD
            and (entry.fields.get("event") in ACTIVITY_KINDS
                 or entry.fields.get("event") == ACCOUNT_KIND)
        ]  # fmt: skip
        if not wanted:
            return
        with ThreadPoolExecutor(_READERS, thread_name_prefix="coexistence") as pool:
            records = list(pool.map(self._record, wanted))
        pending: dict[str, list[Callable[[dict[str, Any]], dict[str, Any]]]] = {}
        for (leaf, entry), record in zip(wanted, records, strict=True):
            if record is None:
                continue
            if entry.fields.get("event") == ACCOUNT_KIND:
                # Its alert names the numbers the views know: first the earlier leaves'.
                self._write_views(pending)
                self._account_event(leaf, record)
                continue
            self._activity(leaf, entry, record, pending)
        self._write_views(pending)

    def _record(self, item: tuple[int, Entry]) -> Record | None:
        return record_of_entry(
            self.objects, item[1], reader=COEXISTENCE_READER, recent=self.recent
        )

    def _write_views(
        self, pending: dict[str, list[Callable[[dict[str, Any]], dict[str, Any]]]]
    ) -> None:
        for key, changes in pending.items():

            def change(
                view: dict[str, Any],
                changes: list[Callable[[dict[str, Any]], dict[str, Any]]] = changes,
            ) -> dict[str, Any]:
                for one in changes:
                    view = one(view)
                return view

            update_json(self.state, key, change, {})
        pending.clear()

    def _activity(
        self,
        leaf: int,
        entry: Entry,
        record: Record,
        pending: dict[str, list[Callable[[dict[str, Any]], dict[str, Any]]]],
    ) -> None:
        """Queue the change a message-like record makes to its number's view."""
        kind = entry.fields.get("event")
        header_business = record.header.get("business") or {}
        business = header_business.get("phone_number_id")
        if not business:
            return
        waba = header_business.get("waba_id")
        display = _digits(header_business.get("display_phone_number"))
        captured = record.header.get("captured_at")
        chunk = self._chunk(record, leaf) if kind == "history_chunk" else None
        errors = self._history_errors(record) if kind == "history_error" else None

        def change(view: dict[str, Any]) -> dict[str, Any]:
            if waba:  # how account events naming only the WABA reach this number
                view["waba_id"] = str(waba)
            if display:  # ... and those naming its display number
                view["display_phone_number"] = display
            if captured and (view.get("last_activity") or "") < captured:
                view["last_activity"] = captured
            if chunk is not None:
                chunks = view.setdefault("history_chunks", {})
                chunks[str(leaf)] = chunk
            if errors is not None:  # keyed by leaf: replaying the log changes nothing
                view.setdefault("history_errors", {})[str(leaf)] = errors
            return view

        key = COEXISTENCE_VIEW_PREFIX + quote(str(business), safe="")
        pending.setdefault(key, []).append(change)

    def _account_event(self, leaf: int, record: Record) -> None:
        event = self._event(record)
        attributes = dict(event.get("attributes") or {})
        name = str(attributes.get("event") or event.get("event") or "")
        item = account_item(name, attributes, dict(record.header), leaf)
        if item is None:
            return
        business = record.header.get("business") or {}
        scopes = account_scopes(attributes, business)
        if not scopes:
            return
        for scope in scopes:

            def change(view: dict[str, Any]) -> dict[str, Any]:
                view.setdefault("events", {})[str(leaf)] = item  # by leaf: replay-safe
                return view

            update_json(self.state, COEXISTENCE_SCOPE_PREFIX + quote(scope, safe=""), change, {})
        if item["effect"] == "disconnected":
            # The alert: from now on the phone app's messages are no longer archived.
            log.warning(
                "coexistence_disconnected",
                account_event=name,
                scopes=scopes,
                numbers=self._numbers_for(scopes),
                occurred_at=item["at"],
            )
        elif item["effect"] == "connected":
            log.info("coexistence_reconnected", account_event=name, scopes=scopes)

    def _numbers_for(self, scopes: list[str]) -> list[str]:
        return sorted(
            number
            for number, view in self.number_views().items()
            if set(number_scopes(number, view)) & set(scopes)
        )

    def number_views(self) -> dict[str, dict[str, Any]]:
        """Every number the view has seen, with its view (no catch-up)."""
        out: dict[str, dict[str, Any]] = {}
        for key in self.state.list(COEXISTENCE_VIEW_PREFIX):
            name = key[len(COEXISTENCE_VIEW_PREFIX) :]
            if "/" in name or name == VIEW_CURSOR:
                continue
            value = self.state.get(key)
            if value is not None:
                out[unquote(name)] = dict(json.loads(value.value))
        return out

    def connection(
        self, phone_number_id: str, view: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The number's link state and its history from the view (no catch-up)."""
        if view is None:
            value = self.state.get(COEXISTENCE_VIEW_PREFIX + quote(phone_number_id, safe=""))
            view = json.loads(value.value) if value else {}
        items: list[dict[str, Any]] = []
        for scope in number_scopes(phone_number_id, view):
            value = self.state.get(COEXISTENCE_SCOPE_PREFIX + quote(scope, safe=""))
            if value is not None:
                items.extend((json.loads(value.value).get("events") or {}).values())
        return connection_summary(items)

    def connections(self) -> dict[str, dict[str, Any]]:
        """Each seen number's connection summary (for ``archiver status`` and metrics)."""
        return {n: self.connection(n, v) for n, v in sorted(self.number_views().items())}

    def _event(self, record: Record) -> dict[str, Any]:
        try:
            return dict(record.open(self.keys.get(record.key_id).secret).get("event") or {})
        except (KeysError, RecordError):
            return {}

    def _history_errors(self, record: Record) -> list[dict[str, Any]]:
        """Meta's code and title of each error (no personal data: business-level)."""
        at = record.header.get("occurred_at") or record.header.get("captured_at")
        errors = self._event(record).get("errors") or [{}]  # unreadable: still a problem
        return [{"code": e.get("code"), "title": e.get("title"), "at": at} for e in errors]

    def _chunk(self, record: Record, leaf: int) -> dict[str, Any]:
        event = self._event(record)
        return {
            "phase": event.get("phase"),
            "chunk_order": event.get("chunk_order"),
            "progress": event.get("progress"),
            "at": record.header.get("captured_at"),
        }

    # -- the report -------------------------------------------------------------------

    def report(self, phone_number_id: str, *, orphan_hours: float = 24.0) -> dict[str, Any]:
        self.catch_up()
        now = self.clock()
        value = self.state.get(COEXISTENCE_VIEW_PREFIX + quote(phone_number_id, safe=""))
        view: dict[str, Any] = json.loads(value.value) if value else {}
        history = history_summary(
            list((view.get("history_chunks") or {}).values()),
            [e for errors in (view.get("history_errors") or {}).values() for e in errors],
        )
        last = view.get("last_activity")
        silent_for = (now - datetime.fromisoformat(last)) if last else None
        silent = silent_for is not None and silent_for > self.silence
        orphans = self.orphan_statuses(phone_number_id, timedelta(hours=orphan_hours))
        connection = self.connection(phone_number_id, view)
        warnings = []
        if connection["state"] == "disconnected":
            warnings.append("disconnected")
            log.warning(
                "coexistence_number_disconnected",
                phone_number_id=phone_number_id,
                account_event=connection["event"],
                since=connection["since"],
            )
        if history["state"] in ("declined", "failed"):
            warnings.append(f"history_{history['state']}")
            log.warning(
                "coexistence_history_problem",
                phone_number_id=phone_number_id,
                state=history["state"],
                codes=[e.get("code") for e in history["errors"]],
            )
        if silent:
            warnings.append("silent")
            log.warning(
                "coexistence_number_silent",
                phone_number_id=phone_number_id,
                hours=round(silent_for.total_seconds() / 3600, 1) if silent_for else None,
            )
        if orphans:
            warnings.append("orphan_statuses")
            log.warning(
                "coexistence_orphan_statuses", phone_number_id=phone_number_id, count=len(orphans)
            )
        return {
            "phone_number_id": phone_number_id,
            "sync": self.sync_state(phone_number_id),
            "history": history,
            "connection": connection,
            "last_activity": last,
            "silence_alert_hours": self.silence.total_seconds() / 3600,
            "silent": silent,
            "orphan_after_hours": orphan_hours,
            "orphan_statuses": orphans,
            "warnings": warnings,
        }

    def orphan_statuses(self, phone_number_id: str, older_than: timedelta) -> list[dict[str, Any]]:
        """Status folds still waiting for their message, older than ``older_than``."""
        now = self.clock()
        found = []
        for key in self.state.list(LIVE_FOLDS_PREFIX):
            value = self.state.get(key)
            if value is None:
                continue
            for item in json.loads(value.value):
                if item.get("op") != "status":
                    continue
                header = self._header(str(item["data"].get("record_id") or ""))
                if header is None:
                    continue
                if (header.get("business") or {}).get("phone_number_id") != phone_number_id:
                    continue
                at = header.get("captured_at")
                if at and now - datetime.fromisoformat(at) > older_than:
                    found.append(
                        {
                            "target": key[len(LIVE_FOLDS_PREFIX) :],
                            "status_record_id": item["data"].get("record_id"),
                            "status": item["data"].get("status"),
                            "captured_at": at,
                        }
                    )
        return found

    def _header(self, record_id: str) -> dict[str, Any] | None:
        if not record_id.startswith("r_"):
            return None
        key = record_key(record_id)
        live = [
            v for v in self.objects.list_versions(key) if v.key == key and not v.is_delete_marker
        ]
        if not live:
            return None
        try:
            return dict(Record.parse(self.objects.get(key, live[0].version_id)).header)
        except (ObjectNotFound, RecordError):
            return None


def history_summary(
    chunks: list[dict[str, Any]], errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Per phase: chunks seen and highest progress; overall complete at progress 100 (pure).

    ``state``: ``complete``, ``in_progress``, ``not_started``, or — when Meta reported a
    history error — ``declined`` (code 2593109) or ``failed``: a problem, not progress."""
    errors = sorted(errors or [], key=lambda e: str(e.get("at") or ""))
    phases: dict[str, dict[str, Any]] = {}
    for chunk in chunks:
        phase = phases.setdefault(str(chunk.get("phase")), {"chunks": 0, "progress": 0})
        phase["chunks"] += 1
        progress = chunk.get("progress")
        if isinstance(progress, int) and progress > phase["progress"]:
            phase["progress"] = progress
    progress = max((p["progress"] for p in phases.values()), default=0)
    complete = progress >= 100
    if complete:
        state = "complete"
    elif any(e.get("code") == HISTORY_DECLINED for e in errors):
        state = "declined"
    elif errors:
        state = "failed"
    else:
        state = "in_progress" if chunks else "not_started"
    return {
        "phases": phases,
        "progress": progress,
        "complete": complete,
        "chunks": len(chunks),
        "state": state,
        "errors": errors,
    }


def _digits(value: Any) -> str | None:
    digits = "".join(ch for ch in str(value or "") if ch.isdigit())
    return digits or None


def number_scopes(phone_number_id: str, view: dict[str, Any]) -> list[str]:
    """The scopes whose account events concern this number (pure)."""
    scopes = [f"number:{phone_number_id}"]
    if view.get("waba_id"):
        scopes.append(f"waba:{view['waba_id']}")
    if view.get("display_phone_number"):
        scopes.append(f"display:{view['display_phone_number']}")
    return scopes


def account_scopes(attributes: dict[str, Any], business: dict[str, Any]) -> list[str]:
    """Which numbers an account event concerns, as scopes (pure; rule in the module doc).

    A named phone number narrows the event to that number, never the whole WABA."""
    if business.get("phone_number_id"):
        return [f"number:{business['phone_number_id']}"]
    display = _digits(attributes.get("phone_number")) or _digits(
        business.get("display_phone_number")
    )
    if display:
        return [f"display:{display}"]
    info = attributes.get("waba_info")
    waba = (info.get("waba_id") if isinstance(info, dict) else None) or business.get("waba_id")
    return [f"waba:{waba}"] if waba else []


def account_effect(name: str, attributes: dict[str, Any]) -> str | None:
    """``disconnected``, ``connected``, ``notable`` or None (not about the link) (pure)."""
    if name in DISCONNECTING:
        return "disconnected"
    if name in CONNECTING:
        return "connected"
    if name == "DISABLED_UPDATE":
        ban = attributes.get("ban_info")
        state = ban.get("waba_ban_state") if isinstance(ban, dict) else None
        if state == "DISABLE":
            return "disconnected"
        if state == "REINSTATE":
            return "connected"
    return "notable" if name in NOTABLE else None


def account_item(
    name: str, attributes: dict[str, Any], header: dict[str, Any], leaf: int
) -> dict[str, Any] | None:
    effect = account_effect(name, attributes)
    if effect is None:
        return None
    at = header.get("occurred_at") or header.get("captured_at")
    # Business-level facts only (the event name, reason codes): no personal data.
    detail = {
        k: attributes[k]
        for k in ("disconnection_info", "violation_info", "ban_info", "restriction_info")
        if k in attributes
    }
    return {"event": name, "effect": effect, "at": at, "leaf": leaf, "detail": detail}


def connection_summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    """State from the newest connecting / disconnecting event; history oldest first (pure)."""
    history = sorted(items, key=lambda i: (str(i.get("at") or ""), int(i.get("leaf") or 0)))
    state, since, event = "connected", None, None
    for item in history:
        if item.get("effect") in ("connected", "disconnected"):
            state, since, event = item["effect"], item.get("at"), item.get("event")
    return {
        "state": state,
        "connected": state == "connected",
        "since": since,
        "event": event,
        "history": history,
    }
