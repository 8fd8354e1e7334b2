"""Proofs for outsiders: the signed checkpoint, the verifier key, inclusion and
consistency proofs, and a record's leaf with its inclusion proof.

Trust: the verifier keys are the current signer's plus every key announced in the log
by a ``checkpoint_key`` entry (each announced in a tree signed by the key before it,
so the chain starts at the key an auditor pinned), plus ``ARCHIVER_TRUSTED_KEYS``.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.audit import SYSTEM, AuditTrail
from archiver.errors import InvalidInput, NotFound
from archiver.keyspace import RAW_PREFIX, record_key
from archiver.ledger import merkle
from archiver.ledger.checkpoint_format import open_checkpoint
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.entry import EntryKind, make_entry, parse_entry
from archiver.ledger.errors import LedgerError
from archiver.ledger.log import TransparencyLog
from archiver.ledger.note import Verifier
from archiver.ledger.verify import Finding, FindingKind, verify_archive
from archiver.logs import get_logger
from archiver.retention.common import record_by_id
from archiver.retention.verify_findings import retention_findings
from archiver.store.errors import StoreError
from archiver.store.port import ObjectStore
from search.errors import SearchError
from search.port import SearchIndex

log = get_logger(__name__)
# Findings of a verify run named object by object in its audit event (the rest counted).
VERIFY_AUDIT_LISTED = 100


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class InvalidProofRange(InvalidInput):
    """A proof asked for leaves or sizes outside the tree."""

    code = "proof_range"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    findings: list[Finding]
    pending: list[Finding]  # unlogged but younger than the grace window: not findings yet
    tree_size: int
    sample: int | None
    started_at: datetime
    finished_at: datetime


class ProofService:
    def __init__(
        self,
        log: TransparencyLog,
        checkpoints: CheckpointSigner,
        objects: ObjectStore,
        index: SearchIndex,
        *,
        extra_trusted: tuple[str, ...] = (),
        residue: Callable[[], list[Finding]] | None = None,
    ) -> None:
        # Checks beside the log's own (erasure residue in working state and the index).
        self.residue = residue
        self.log = log
        self.checkpoints = checkpoints
        self.objects = objects
        self.index = index
        self.extra_trusted = extra_trusted

    # -- keys ----------------------------------------------------------------------------

    def public_key(self) -> str:
        return self.checkpoints.signer.verifier.key_text

    def trusted_verifiers(self) -> list[Verifier]:
        texts = {self.public_key(), *self.extra_trusted}
        size = self.log.size()
        for start in range(0, size, 1000):
            for data in self.log.entries(start, min(size, start + 1000)):
                entry = parse_entry(data)
                if entry.kind is EntryKind.CHECKPOINT_KEY:
                    texts.add(str(entry.fields["verifier_key"]))
                    texts.add(str(entry.fields["previous_key"]))
        return [Verifier.from_key_text(t) for t in sorted(texts)]

    # -- proofs --------------------------------------------------------------------------

    def checkpoint(self) -> str:
        note = self.checkpoints.latest()
        if note is None:
            self.checkpoints.sign_if_grown()
            note = self.checkpoints.latest()
        if note is None:
            raise NotFound("the log is empty: no checkpoint yet", code="no_checkpoint")
        return note

    def _signed_size(self) -> int:
        note = self.checkpoint()
        return open_checkpoint(note, self.trusted_verifiers(), self.log.origin).size

    def inclusion(self, leaf_index: int, tree_size: int | None) -> dict[str, Any]:
        size = tree_size if tree_size is not None else self._signed_size()
        if not 0 <= leaf_index < size or size > self.log.size():
            raise InvalidProofRange(
                f"need 0 <= leaf_index < tree_size <= {self.log.size()}",
                details={"leaf_index": leaf_index, "tree_size": size},
            )
        entry = self.log.entry(leaf_index)
        return {
            "leaf_index": leaf_index,
            "tree_size": size,
            "leaf_hash": _b64(merkle.hash_leaf(entry)),
            "entry": _b64(entry),
            "root_hash": _b64(self.log.root_at(size)),
            "proof": [_b64(h) for h in self.log.inclusion_proof(leaf_index, size)],
        }

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        if not 0 < first <= second <= self.log.size():
            raise InvalidProofRange(
                f"need 0 < from <= to <= {self.log.size()}",
                details={"from": first, "to": second},
            )
        return {
            "from": first,
            "to": second,
            "first_root": _b64(self.log.root_at(first)),
            "second_root": _b64(self.log.root_at(second)),
            "proof": [_b64(h) for h in self.log.consistency_proof(first, second)],
        }

    def _record_number(self, record_id: str) -> tuple[str | None, int | None]:
        """``(phone_number_id, leaf index)`` of a record, by key, never by a log scan: its
        index document first; else its stored header (leaf index unknown then). Raises
        NotFound for an id that names no stored record."""
        try:
            doc = self.index.get(record_id)
        except SearchError:
            doc = None
        if doc is not None and isinstance(doc.get("leaf_index"), int):
            return doc.get("phone_number_id"), int(doc["leaf_index"])
        record = record_by_id(self.objects, record_id)  # keyed: one LIST + one GET
        return record.phone_number_id, None

    def record_leaf(self, record_id: str, numbers: Sequence[str] | None = None) -> int:
        """The leaf naming the record's object. ``numbers`` (a token's scope, by
        ``phone_number_id``; None = every number): another number's record is NotFound,
        like an unknown one. An unknown id costs a keyed lookup, never a log scan; only a
        stored record the index does not know (not yet indexed, or a kind the index keeps
        no document for) is looked up in the log."""
        number, leaf = self._record_number(record_id)
        if numbers is not None and number not in numbers:
            raise NotFound(f"no leaf for record {record_id}", code="record_not_found")
        if leaf is not None:
            return leaf
        key = record_key(record_id)
        size = self.log.size()
        for start in range(0, size, 1000):
            for offset, data in enumerate(self.log.entries(start, min(size, start + 1000))):
                entry = parse_entry(data)
                if entry.kind is EntryKind.RECORD and entry.key == key:
                    return start + offset
        raise NotFound(f"no leaf for record {record_id}", code="record_not_found")

    def record_proof(self, record_id: str, numbers: Sequence[str] | None = None) -> dict[str, Any]:
        leaf = self.record_leaf(record_id, numbers)
        proof = self.inclusion(leaf, None)
        proof["record_id"] = record_id
        proof["checkpoint"] = self.checkpoint()
        return proof

    def scoped_inclusion(
        self, leaf_index: int, tree_size: int | None, numbers: Sequence[str] | None
    ) -> dict[str, Any]:
        """``inclusion`` for a token scoped to ``numbers`` (None = every leaf): a leaf's
        entry names a record id, its kind and policy, so a scoped token gets only the
        leaves of records of its own numbers; any other leaf is NotFound."""
        if numbers is not None and 0 <= leaf_index < self.log.size():
            entry = parse_entry(self.log.entry(leaf_index))
            number = None
            if entry.kind is EntryKind.RECORD and entry.key:
                with contextlib.suppress(NotFound):  # disposed: no number to check against
                    number = self._record_number(str(entry.key).rsplit("/", 1)[-1])[0]
            if number is None or number not in numbers:
                raise NotFound(f"no leaf {leaf_index} for this token", code="leaf_not_found")
        return self.inclusion(leaf_index, tree_size)

    # -- verify --------------------------------------------------------------------------

    def verify(
        self,
        sample: int | None = None,
        audit: AuditTrail | None = None,
        *,
        grace: float = 300.0,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> VerifyReport:
        """Verify the archive against the log (``verify_archive``) and put the run itself
        on the record: a ``verify_run`` leaf and, with ``audit``, an audit event. A run that
        found something but cannot be recorded still returns its findings."""
        started = datetime.now(UTC)
        try:
            trusted = self.trusted_verifiers()  # reads the log for announced keys
        except (LedgerError, StoreError):
            # An unreadable log is verify's finding to report, not a crash.
            trusted = [Verifier.from_key_text(self.public_key())]
        try:
            latest = self.checkpoints.pointer()
        except StoreError:
            latest = None  # the state store is down: the log read below will say so
        result = verify_archive(
            self.log, self.objects, trusted, sample, grace=grace, latest_checkpoint=latest,
            batch_prefix=RAW_PREFIX, progress=progress,
        )
        findings = list(result.findings)
        if self.residue is not None:
            try:
                findings += self.residue()
            except (LedgerError, StoreError, SearchError) as exc:
                findings.append(Finding(FindingKind.LOG_UNREADABLE, None, None, None, None,
                                        f"erasure residue not checked: {exc}"))
        if not any(f.kind is FindingKind.LOG_UNREADABLE for f in result.findings):
            # Index documents of disposed records, attachments of held messages not held.
            findings += retention_findings(self.log, self.objects, self.index)
        finished = datetime.now(UTC)
        report = VerifyReport(
            findings, result.pending, result.tree_size, sample, started, finished
        )
        try:
            self.log.append(
                [
                    make_entry(
                        EntryKind.VERIFY_RUN,
                        time=finished,
                        tree_size=report.tree_size,
                        sample=sample if sample is not None else "all",
                        findings=len(report.findings),
                        pending=len(report.pending),
                        kinds=sorted({f.kind.value for f in report.findings}),
                    ).data
                ]
            )
            if audit is not None:
                from archiver.audit import AuditAction

                # Per object (the log leaf holds kinds only: object keys carry digit runs
                # its phone-number guard refuses): a bounded list and the count per kind.
                listed = sorted(report.findings, key=lambda f: (
                    f.kind.value, f.key or "", f.version_id or ""))[:VERIFY_AUDIT_LISTED]
                by_kind: dict[str, int] = {}
                for f in report.findings:
                    by_kind[f.kind.value] = by_kind.get(f.kind.value, 0) + 1
                audit.record(
                    AuditAction.VERIFY_RUN, SYSTEM, tree_size=report.tree_size,
                    findings=len(report.findings), pending=len(report.pending),
                    by_kind=dict(sorted(by_kind.items())),
                    objects=[{"kind": f.kind.value, "key": f.key, "version_id": f.version_id}
                             for f in listed],
                )  # fmt: skip
        except (LedgerError, StoreError) as exc:
            if not report.findings:
                raise  # a clean archive whose run cannot be recorded: the caller must know
            log.error("verify_run_not_recorded", error=str(exc))
        return report
