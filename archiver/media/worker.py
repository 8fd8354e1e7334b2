"""The media worker: media jobs → encrypted blobs per subject → media-link records.

The processor leaves one job per media attachment in working state at
``mediajobs/<record_id>/<index>`` (``archiver.ingest.processor._media_jobs``). For each
due job the worker:

1. claims it (compare-and-swap on the job document, with a lease);
2. downloads the bytes through the Graph API (``GraphClient.download_media``: Meta's
   ``sha256`` — hex or base64 — is checked against the bytes and against the webhook's;
   a 404 on the 5-minute URL fetches a fresh URL once);
3. encrypts them under the data subject's key (``archiver.keys.envelope.encrypt``, AAD =
   the object key) and writes them write-once at ``media/<owner>/<plaintext sha256>``
   with the message's retention. Same owner + same hash → the stored blob is reused
   (its retention extended if needed); different owners never share a blob, so
   erasing one subject never touches another's copy;
4. writes a small immutable ``media_link`` record (``link_of`` = the message record)
   naming the blob's key, version, plaintext SHA-256, size and MIME type;
5. saves the log entries it is about to append in the job (``status: logging``),
   appends them (``media`` leaf for a blob not yet logged, ``record`` leaf for the
   link), and marks the job ``done``.

Failures count an attempt and set ``next_retry_at`` (``archiver.whatsapp.media``:
exponential, inside the media id's 7-day life). When no attempt is left — or the media
is gone (``MediaExpired``) or too large — a ``media_missing`` record flags the message.

One job never blocks another. A job whose media id is not Meta's shape (digits) — the
processor marks it ``problem: media_id_invalid``, and older jobs are checked here too — is
never fetched: the message is flagged at once (``media_missing``, reason
``media_id_invalid``). Any other failure of a job's own (an exception that is not the
store being down) **parks** it: ``status: parked`` with ``parked_reason``,
``parked_error`` and ``parked_from`` (its status before), counted in
``archiver_media_jobs_parked_total{reason}``; parked jobs are skipped until an operator
sets them back to ``pending``. Only ``StoreUnavailable`` stops a run (the loop backs off
and every job stays as it was).

Crash safety: records and blobs are write-once at deterministic keys, so a replay finds
them and reuses them; log entries are saved in the job before the append, and a replay
in ``logging`` appends only the entries not yet in the log (as the processor does).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from archiver.keys.envelope import DataKey, encrypt
from archiver.keys.errors import KeysError
from archiver.keys.store import KeyStore
from archiver.keyspace import MEDIA_JOBS_PREFIX, media_logged_key, media_object_key
from archiver.ledger.entry import EntryKind, key_created_entry, make_entry
from archiver.ledger.ports import LogAppender
from archiver.logs import get_logger
from archiver.metrics import MEDIA_JOBS_PARKED, MEDIA_JOBS_REFUSED
from archiver.records.model import Record, iso
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.attachments import Attachment, AttachmentView
from archiver.retention.holds import hold_new_attachments
from archiver.store.errors import (
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StoreUnavailable,
)
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore, lock_at_least
from archiver.whatsapp.graph import GraphClient, GraphError, MediaExpired, MediaTooLarge
from archiver.whatsapp.media import (
    MEDIA_ID_INVALID,
    is_media_id,
    next_retry_at,
    normalise_sha256,
)

log = get_logger("archiver.media")



class MediaJobStatus(StrEnum):
    """``status`` of ``mediajobs/<record id>/<n>`` (stored: the values never change).
    A job written by the processor has none yet: it reads as PENDING."""

    PENDING = "pending"
    PARKED = "parked"  # a store or key failure; ``parked_from`` keeps the status before
    LOGGING = "logging"  # the entries saved in the job, being appended
    DONE = "done"
    MISSING = "missing"  # Meta no longer has it: a ``media_missing`` record is logged
    ABANDONED = "abandoned"  # a permanent error


FINISHED = frozenset({MediaJobStatus.DONE, MediaJobStatus.MISSING, MediaJobStatus.ABANDONED})
CLAIM = timedelta(minutes=5)
KEEP_FINISHED = timedelta(days=30)
MEDIA_CONTENT_TYPE = "application/x-wa-media-envelope"


def key_owner(job: dict[str, Any], pseudo: Pseudonymizer) -> str:
    """The data subject, or the business number's pseudonym (as the processor names it)."""
    subject = job.get("subject")
    if subject:
        return str(subject)
    return pseudo.business(str(job.get("phone_number_id") or "unknown"))


@dataclass
class RunReport:
    stored: int = 0
    reused: int = 0
    retried: int = 0
    flagged: int = 0
    abandoned: int = 0
    resumed: int = 0
    parked: int = 0
    errors: list[str] = field(default_factory=list)


class _Lost(Exception):
    """Our claim on a job was taken over (lease expired); leave the job to its new owner."""


class MediaWorker:
    def __init__(
        self,
        *,
        objects: ObjectStore,
        state: StateStore,
        keys: KeyStore,
        log_appender: LogAppender,
        pseudo: Pseudonymizer,
        graph: GraphClient,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        owner: str | None = None,
    ) -> None:
        self.objects = objects
        self.state = state
        self.keys = keys
        self.log = log_appender
        self.pseudo = pseudo
        self.graph = graph
        self.clock = clock
        self.owner = owner or secrets.token_hex(6)

    # -- the run ----------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> RunReport:
        """Work every due job once. Store errors propagate (the loop backs off)."""
        at = now or self.clock()
        report = RunReport()
        for job_key in list(self.state.list(MEDIA_JOBS_PREFIX)):
            claimed = self._claim(job_key, at)
            if claimed is None:
                continue
            doc, token = claimed
            try:
                self._work(job_key, doc, token, at, report)
            except _Lost:
                continue
            except StoreUnavailable:
                raise  # not the job's fault: the loop backs off, every job stays put
            except Exception as exc:  # the job's own failure: set it aside, go on
                self._park(job_key, at, exc, report)
        return report

    def _park(self, job_key: str, now: datetime, exc: Exception, report: RunReport) -> None:
        """Set a job aside with its reason, so it never blocks the others. Reads the job
        again: ``_work`` may have saved it (new token) before failing."""
        reason = str(getattr(exc, "code", None) or type(exc).__name__)
        log.error("media_job_parked", job=job_key, reason=reason, exc_info=exc)
        current = self.state.get(job_key)
        if current is None:
            return
        doc: dict[str, Any] = json.loads(current.value)
        if doc.get("claim_owner") != self.owner:
            return  # taken over meanwhile: its new owner decides
        parked = {
            **doc,
            "status": MediaJobStatus.PARKED,
            "parked_from": doc.get("status", MediaJobStatus.PENDING),
            "parked_reason": reason,
            "parked_error": str(exc)[:300],
            "parked_at": iso(now),
            "claim_owner": None,
            "claim_until": None,
        }
        try:
            self.state.put(job_key, _dump(parked), if_match=current.token)
        except PreconditionFailed:
            return
        report.parked += 1
        MEDIA_JOBS_PARKED.labels(reason).inc()

    def _claim(self, job_key: str, now: datetime) -> tuple[dict[str, Any], str] | None:
        current = self.state.get(job_key)
        if current is None:
            return None
        doc: dict[str, Any] = json.loads(current.value)
        status = doc.get("status", MediaJobStatus.PENDING)
        if status == MediaJobStatus.PARKED:
            return None  # set aside with its reason until an operator re-queues it
        if status in FINISHED:
            finished = doc.get("finished_at")
            if finished and now - datetime.fromisoformat(finished) > KEEP_FINISHED:
                self.state.delete(job_key, if_match=current.token)
            return None
        due = doc.get("next_retry_at")
        if status == MediaJobStatus.PENDING and due and datetime.fromisoformat(due) > now:
            return None
        until = doc.get("claim_until")
        if (
            doc.get("claim_owner") not in (None, self.owner)
            and until
            and datetime.fromisoformat(until) > now
        ):
            return None
        doc = {**doc, "claim_owner": self.owner, "claim_until": iso(now + CLAIM)}
        try:
            token = self.state.put(job_key, _dump(doc), if_match=current.token)
        except PreconditionFailed:
            return None
        return doc, token

    def _save(self, job_key: str, doc: dict[str, Any], token: str) -> str:
        try:
            return self.state.put(job_key, _dump(doc), if_match=token)
        except PreconditionFailed as exc:
            raise _Lost(job_key) from exc

    def _work(
        self, job_key: str, doc: dict[str, Any], token: str, now: datetime, report: RunReport
    ) -> None:
        if doc.get("status") == MediaJobStatus.LOGGING:
            report.resumed += 1
            self._finish(job_key, doc, token, now)
            return
        first_seen = datetime.fromisoformat(doc["first_seen"])
        try:
            data_key, key_entries = self._data_key(job_key, doc)
        except KeysError as exc:  # the subject was erased: nothing left to archive for it
            report.abandoned += 1
            done = {**doc, "status": MediaJobStatus.ABANDONED, "last_error": exc.code,
                    "finished_at": iso(now)}
            self._save(job_key, done, token)
            return
        problem = doc.get("problem") or (
            None if is_media_id(doc.get("media_id")) else MEDIA_ID_INVALID
        )
        if problem:  # never fetched: no Graph URL is built from it
            report.flagged += 1
            MEDIA_JOBS_REFUSED.labels(str(problem)).inc()
            self._flag(job_key, {**doc, "last_error": problem}, token, now, data_key, key_entries)
            return
        try:
            blob = self.graph.download_media(
                doc["media_id"],
                phone_number_id=doc.get("phone_number_id"),
                expected_sha256=_expected(doc.get("sha256")),
                first_seen=first_seen,
                now=now,
            )
        except (MediaExpired, MediaTooLarge) as exc:
            report.flagged += 1
            self._flag(job_key, {**doc, "last_error": exc.code}, token, now, data_key, key_entries)
            return
        except GraphError as exc:
            attempts = int(doc.get("attempts", 0)) + 1
            retry = next_retry_at(now, first_seen, attempts)
            doc = {**doc, "attempts": attempts, "last_error": exc.code, "last_try": iso(now)}
            if retry is None:
                report.flagged += 1
                self._flag(job_key, doc, token, now, data_key, key_entries)
                return
            report.retried += 1
            log.info("media_retry", job=job_key, attempts=attempts, error_code=exc.code)
            self._save(
                job_key,
                {
                    **doc,
                    "status": MediaJobStatus.PENDING,
                    "next_retry_at": iso(retry),
                    "claim_owner": None,
                    "claim_until": None,
                },
                token,
            )
            return
        entries, logged_key, new, attachment = self._store(
            doc, blob.data, blob.sha256_hex, blob.mime_type, data_key, now
        )
        report.stored += new
        report.reused += not new
        doc = {
            **doc,
            "attempts": int(doc.get("attempts", 0)) + 1,
            "sha256_verified": blob.sha256_hex,
            "attachment": attachment.to_json(),
        }
        self._log_then_finish(
            job_key, doc, token, now, [*key_entries, *entries], logged_key, "done"
        )

    # -- storing ----------------------------------------------------------------------

    def _data_key(self, job_key: str, doc: dict[str, Any]) -> tuple[DataKey, list[bytes]]:
        """The job's data key, and the log entry of its creation if this job created it.
        Jobs name their record's key; one without (queued by an older version) takes the
        subject's current key, created on first use. The job is the key's creator, so a
        retry after a crash gets the creation event again and logs it exactly once."""
        key_id = doc.get("key_id")
        if key_id:
            return self.keys.get(str(key_id)), []
        subject = key_owner(doc, self.pseudo)
        key, event = self.keys.get_or_create(subject, creator=job_key)
        return key, [] if event is None else [key_created_entry(event)]

    def _retention(self, doc: dict[str, Any]) -> Retention:
        until = datetime.fromisoformat(doc["retain_until"])
        return lock_at_least(LockMode(doc["lock_mode"]), until, self.clock())

    def _store(
        self,
        doc: dict[str, Any],
        data: bytes,
        sha256_hex: str,
        mime_type: str,
        data_key: DataKey,
        now: datetime,
    ) -> tuple[list[bytes], tuple[str, str], bool, Attachment]:
        """Write (or find) the blob and the link record; return the log entries to append
        and the association the link states (message ↔ link ↔ blob)."""
        owner = key_owner(doc, self.pseudo)
        object_key = media_object_key(owner, sha256_hex)
        retention = self._retention(doc)
        entries: list[bytes] = []
        try:
            put = self.objects.put(
                object_key,
                encrypt(data_key, data, aad=object_key.encode()),
                retention=retention,
                content_type=MEDIA_CONTENT_TYPE,
            )
            version, stored_sha, stored_size, new = put.version_id, put.sha256, put.size, True
        except ObjectExists:
            version = self._only_version(object_key)
            info = self.objects.stat(object_key, version)
            stored_sha = (
                info.sha256 or hashlib.sha256(self.objects.get(object_key, version)).hexdigest()
            )
            stored_size, new = info.size, False
            previous = info.retention.retain_until if info.retention else None
            # S3 keeps milliseconds: a sub-second difference is the same date, not a shortfall.
            if previous is None or previous < retention.retain_until - timedelta(seconds=1):
                # The blob lives as long as the longest-kept message that links it.
                self.objects.extend_retention(object_key, version, retention.retain_until)
                entries.append(
                    make_entry(
                        EntryKind.RETENTION_EXTENDED,
                        time=now,
                        key=object_key,
                        version_id=version,
                        retain_until=retention.retain_until,
                        # Epoch seconds: an ISO date string trips make_entry's phone-number guard.
                        previous_unix=int(previous.timestamp()) if previous else None,
                    ).data
                )
        logged_key = media_logged_key(owner, sha256_hex)
        logged = self.state.get(logged_key)
        if logged is None or logged.value.decode() != version:
            entries.insert(
                0,
                make_entry(
                    EntryKind.MEDIA,
                    time=now,
                    key=object_key,
                    version_id=version,
                    sha256=stored_sha,
                    size=stored_size,
                    retain_until=retention.retain_until,
                    plaintext_sha256=sha256_hex,
                    subject=doc.get("subject"),
                ).data,
            )
        media = {
            "index": doc["index"],
            "sha256": sha256_hex,
            "size": len(data),
            "mime_type": mime_type,
            "key": object_key,
            "version_id": version,
            "stored_sha256": stored_sha,
        }
        link, link_version = self._write_record(
            doc, "media_link", "media", media, {"media_id": doc["media_id"]}, data_key, now
        )
        entries.append(self._record_entry(link, link_version, doc, now))
        attachment = Attachment(
            str(doc["record_id"]), link.record_id, (link.key, link_version), (object_key, version)
        )
        return entries, (logged_key, version), new, attachment

    def _write_record(
        self,
        doc: dict[str, Any],
        kind: str,
        variant: str,
        extra: dict[str, Any],
        content: dict[str, Any],
        data_key: DataKey,
        now: datetime,
    ) -> tuple[Record, str]:
        record_id = self.pseudo.record_id(doc["record_id"], variant, str(doc["index"]))
        header: dict[str, Any] = {
            "v": 1,
            "record_id": record_id,
            "kind": kind,
            "link_of": doc["record_id"],
            "business": {"phone_number_id": doc.get("phone_number_id")},
            "subject": doc.get("subject"),
            "occurred_at": None,
            "captured_at": iso(now),
            "policy": {
                "id": "inherited",
                "retain_until": doc["retain_until"],
                "lock_mode": doc["lock_mode"],
                "matched": [],
            },
            "flags": ["media_missing"] if kind == "media_missing" else [],
            "media" if kind == "media_link" else "missing": extra,
        }
        record = Record.build(header, content, data_key=data_key.secret, key_id=data_key.key_id)
        try:
            put = self.objects.put(
                record.key,
                record.body,
                retention=self._retention(doc),
                content_type="application/json",
            )
            return record, put.version_id
        except ObjectExists:  # an earlier attempt of this job wrote it: reuse those bytes
            version = self._only_version(record.key)
            return Record.parse(self.objects.get(record.key, version)), version

    def _record_entry(
        self, record: Record, version: str, doc: dict[str, Any], now: datetime
    ) -> bytes:
        return make_entry(
            EntryKind.RECORD,
            time=now,
            key=record.key,
            version_id=version,
            sha256=record.sha256,
            size=len(record.body),
            retain_until=datetime.fromisoformat(doc["retain_until"]),
            record_id=record.record_id,
            event=str(record.header["kind"]),
            policy="inherited",
        ).data

    def _flag(
        self,
        job_key: str,
        doc: dict[str, Any],
        token: str,
        now: datetime,
        data_key: DataKey,
        key_entries: list[bytes],
    ) -> None:
        missing = {
            "index": doc["index"],
            "reason": doc.get("last_error"),
            "attempts": int(doc.get("attempts", 0)),
            "first_seen": doc["first_seen"],
        }
        record, version = self._write_record(
            doc,
            "media_missing",
            "media_missing",
            missing,
            {"media_id": doc["media_id"], "sha256": doc.get("sha256")},
            data_key,
            now,
        )
        log.warning("media_missing", job=job_key, reason=doc.get("last_error"))
        entry = self._record_entry(record, version, doc, now)
        attachment = Attachment(
            str(doc["record_id"]), record.record_id, (record.key, version), None
        )
        doc = {**doc, "attachment": attachment.to_json()}
        self._log_then_finish(
            job_key, doc, token, now, [*key_entries, entry], None, MediaJobStatus.MISSING
        )

    # -- logging ----------------------------------------------------------------------

    def _log_then_finish(
        self,
        job_key: str,
        doc: dict[str, Any],
        token: str,
        now: datetime,
        entries: list[bytes],
        logged: tuple[str, str] | None,
        final: str,
    ) -> None:
        doc = {
            **doc,
            "status": MediaJobStatus.LOGGING,
            "final": final,
            "size_before": self.log.size(),
            "entries": [base64.b64encode(e).decode() for e in entries],
            "logged": list(logged) if logged else None,
        }
        token = self._save(job_key, doc, token)
        self._finish(job_key, doc, token, now)

    def _finish(self, job_key: str, doc: dict[str, Any], token: str, now: datetime) -> None:
        attachment = _attachment(doc.get("attachment"))
        if attachment is not None:  # before the leaves: a hold placed meanwhile sees it
            AttachmentView(log=self.log, objects=self.objects, state=self.state).remember(
                attachment
            )
        leaves = self._append_idempotent(doc)
        if doc.get("logged"):
            logged_key, version = doc["logged"]
            self.state.put(logged_key, str(version).encode())
        if attachment is not None:
            # An attachment follows its message: an open hold on the message holds it too.
            hold_new_attachments(objects=self.objects, state=self.state, log=self.log,
                                 keys=self.keys, attachment=attachment)
        done = {
            k: v for k, v in doc.items() if k not in ("entries", "size_before", "logged", "final")
        }
        done.update(
            status=doc.get("final", MediaJobStatus.DONE),
            leaves=leaves,
            finished_at=iso(now),
            claim_owner=None,
            claim_until=None,
        )
        self._save(job_key, done, token)

    def _append_idempotent(self, doc: dict[str, Any]) -> list[int]:
        entries = [base64.b64decode(e) for e in doc["entries"]]
        return self.log.append(entries, once_since=int(doc["size_before"]))

    def _only_version(self, key: str) -> str:
        live = [
            v for v in self.objects.list_versions(key) if v.key == key and not v.is_delete_marker
        ]
        if not live:
            raise ObjectNotFound(f"no version of {key}")
        return live[0].version_id


def _attachment(doc: object) -> Attachment | None:
    if not isinstance(doc, dict):
        return None
    blob = doc.get("blob")
    return Attachment(
        str(doc["message"]), str(doc["link_id"]), (str(doc["link"][0]), str(doc["link"][1])),
        (str(blob[0]), str(blob[1])) if blob else None,
    )


def _expected(value: object) -> str | None:
    """The webhook's digest when it is a well-formed SHA-256 (placeholders are ignored)."""
    if not isinstance(value, str):
        return None
    try:
        return normalise_sha256(value)
    except ValueError:
        return None


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
