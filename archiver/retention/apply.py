"""``archiver retention apply``: re-decide every record with the current policy set and
lengthen retention where the answer grew. Never shortens (S3 refuses it in COMPLIANCE mode
anyway; we do not even ask).

A record's retain-until is in its immutable header as decided when it was written; the
store's lock is what is enforced. When an operator lengthens a policy (or enables a new
obligation), this job moves each affected version's lock later with
``ObjectStore.extend_retention`` and appends a ``retention_extended`` leaf (new date, the
previous one, the governing policy). A raw capture batch is kept as long as the longest
record parsed from it, as the processor does at write time. An attachment (its
``media_link`` / ``media_missing`` record and its blob, ``archiver.retention.attachments``)
is kept as long as the longest-kept message that references it; a link record is never
decided by a policy of its own.

:func:`apply_if_policies_changed` is the scheduled form (``retention-apply`` job, at
start-up and then periodically): it runs the applier once per policy-set fingerprint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from archiver.ingest.ports import raw_capture_facts
from archiver.keyspace import APPLIED_POLICIES_KEY
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.ports import LogAppender
from archiver.records.model import iso
from archiver.retention.attachments import AttachmentView, is_attachment_header
from archiver.retention.common import facts_of, iter_records
from archiver.retention.policy import raw_capture_until
from archiver.store.errors import ObjectNotFound
from archiver.store.port import ObjectStore, StateStore
from policies.model import Decision, RecordFacts

# S3 keeps retain-until at whole seconds: smaller differences are not a lengthening.
_SLACK = timedelta(seconds=1)


class Decider(Protocol):
    def decision(self, facts: RecordFacts) -> Decision: ...


APPLY_CHECK_INTERVAL_S = 300.0  # how often the retention-apply job compares fingerprints


@dataclass
class ApplyReport:
    dry_run: bool
    checked: int = 0
    extended: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "checked": self.checked, "extended": self.extended}


class RetentionApplier:
    def __init__(
        self,
        *,
        objects: ObjectStore,
        log: LogAppender,
        policy: Decider,
        state: StateStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.objects = objects
        self.log = log
        self.policy = policy
        self.state = state  # the attachment view's working state; None: no attachments
        self.clock = clock

    def run(
        self, *, dry_run: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> ApplyReport:
        """Re-decide every stored record; ``progress(checked, None)`` after each (the
        total is unknown: the records are listed as they are read)."""
        report = ApplyReport(dry_run=dry_run)
        view = None
        if self.state is not None:
            view = AttachmentView(log=self.log, objects=self.objects, state=self.state)
            view.catch_up()
        raw_wanted: dict[tuple[str, str], tuple[datetime, str]] = {}
        attached: dict[tuple[str, str, str], tuple[datetime, str]] = {}

        def want(into: dict[Any, tuple[datetime, str]], ident: Any, d: Decision) -> None:
            if ident not in into or d.retain_until > into[ident][0]:
                into[ident] = (d.retain_until, d.governing)

        for r in iter_records(self.objects):
            report.checked += 1
            if progress is not None:
                progress(report.checked, None)
            if is_attachment_header(r.header):
                continue  # follows its message (below)
            facts = facts_of(r.header)
            decision = self.policy.decision(facts)
            self._extend(report, r.key, r.version_id, decision.retain_until,
                         decision.governing, "record", dry_run)
            raw = r.raw
            if raw is not None:
                ident = (raw[0], raw[1])
                if ident not in raw_wanted:  # what an obligation on raw captures requires
                    raw_decision = self.policy.decision(raw_capture_facts(_batch_time(raw[0])))
                    if raw_capture_until(raw_decision) is not None:
                        raw_wanted[ident] = (raw_decision.retain_until, raw_decision.governing)
                want(raw_wanted, ident, decision)
            found = view.of_messages([r.record_id]) if view is not None else []
            if found:  # as the processor decides them: the message's end, or the media's
                media = self.policy.decision(dataclasses.replace(facts, record_kind="media"))
            for a in found:
                for d in (decision, media):
                    want(attached, (*a.link, "record"), d)
                    if a.blob is not None:
                        want(attached, (*a.blob, "media"), d)
        for (key, version), (until, policy) in sorted(raw_wanted.items()):
            self._extend(report, key, version, until, policy, "raw", dry_run)
        for (key, version, kind), (until, policy) in sorted(attached.items()):
            self._extend(report, key, version, until, policy, kind, dry_run)
        return report

    def _extend(
        self, report: ApplyReport, key: str, version: str, until: datetime, policy: str,
        kind: str, dry_run: bool,
    ) -> None:
        try:
            info = self.objects.stat(key, version)
        except ObjectNotFound:
            return
        current = info.retention.retain_until if info.retention else None
        if current is not None and until <= current + _SLACK:
            return  # never shorten; equal is nothing to do
        report.extended.append({"key": key, "version_id": version, "object_kind": kind,
                                "policy": policy, "previous": iso(current),
                                "retain_until": iso(until)})
        if dry_run:
            return
        self.objects.extend_retention(key, version, until)
        self.log.append([make_entry(
            EntryKind.RETENTION_EXTENDED, time=self.clock(), key=key, version_id=version,
            retain_until=until, policy=policy, object_kind=kind,
            # Epoch seconds, not ISO text: the entry's phone-number guard flags date strings.
            previous_unix=int(current.timestamp()) if current else None,
        ).data])  # fmt: skip


def _batch_time(raw_key: str) -> datetime:
    """A raw batch's capture time, from its id (``archiver.ingest.capture.new_batch_id``)."""
    batch_id = raw_key.rsplit("/", 1)[-1]
    return datetime.strptime(batch_id.split("Z-")[0], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


def apply_if_policies_changed(
    applier: RetentionApplier, state: StateStore, fingerprint: str
) -> ApplyReport | None:
    """Run ``applier`` when the policy set's ``fingerprint`` differs from the one the last
    complete apply recorded (an operator enabled or lengthened a policy); then record it.
    The caller holds the jobs lease. Returns the report, or None when nothing changed."""
    done = state.get(APPLIED_POLICIES_KEY)
    if done is not None and done.value.decode() == fingerprint:
        return None
    report = applier.run()
    state.put(APPLIED_POLICIES_KEY, fingerprint.encode())  # after the run: a crash runs it again
    return report
