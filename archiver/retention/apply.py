"""``archiver retention apply``: re-decide every record with the current policy set and
lengthen retention where the answer grew. Never shortens (S3 refuses it in COMPLIANCE mode
anyway; we do not even ask).

A record's retain-until is in its immutable header as decided when it was written; the
store's lock is what is enforced. When an operator lengthens a policy (or enables a new
obligation), this job moves each affected version's lock later with
``ObjectStore.extend_retention`` and appends a ``retention_extended`` leaf (new date, the
previous one, the governing policy). A raw capture batch is kept as long as the longest
record parsed from it, as the processor does at write time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from archiver.ingest.ports import raw_capture_facts
from archiver.ledger.entry import EntryKind, make_entry
from archiver.records.model import iso
from archiver.retention.common import facts_of, iter_records
from archiver.retention.policy import raw_capture_until
from archiver.store.errors import ObjectNotFound
from archiver.store.port import ObjectStore
from policies.model import Decision, RecordFacts

# S3 keeps retain-until at whole seconds: smaller differences are not a lengthening.
_SLACK = timedelta(seconds=1)


class Decider(Protocol):
    def decision(self, facts: RecordFacts) -> Decision: ...


class Appender(Protocol):
    def append(self, entries: list[bytes]) -> list[int]: ...


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
        log: Appender,
        policy: Decider,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.objects = objects
        self.log = log
        self.policy = policy
        self.clock = clock

    def run(self, *, dry_run: bool = False) -> ApplyReport:
        report = ApplyReport(dry_run=dry_run)
        raw_wanted: dict[tuple[str, str], tuple[datetime, str]] = {}
        for r in iter_records(self.objects):
            report.checked += 1
            decision = self.policy.decision(facts_of(r.header))
            self._extend(report, r.key, r.version_id, decision.retain_until,
                         decision.governing, "record", dry_run)
            raw = r.raw
            if raw is not None:
                ident = (raw[0], raw[1])
                if ident not in raw_wanted:  # what an obligation on raw captures requires
                    raw_decision = self.policy.decision(raw_capture_facts(_batch_time(raw[0])))
                    if raw_capture_until(raw_decision) is not None:
                        raw_wanted[ident] = (raw_decision.retain_until, raw_decision.governing)
                if ident not in raw_wanted or decision.retain_until > raw_wanted[ident][0]:
                    raw_wanted[ident] = (decision.retain_until, decision.governing)
        for (key, version), (until, policy) in sorted(raw_wanted.items()):
            self._extend(report, key, version, until, policy, "raw", dry_run)
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
