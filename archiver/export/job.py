"""The export job (kind ``export``): a case, or one data subject's records, into a
verifiable package in the working area (docs/export.md, docs/jobs.md).

Steps, each attempt from the start (Bates numbers are stable per case, so a resumed
attempt numbers every item as the first did):

1. custody ``export_requested`` (once per job: remembered in the job's checkpoint);
2. plan the scope (``archiver.export.gather``), sign the current tree and take that
   checkpoint as the package's;
3. write every item with :class:`~archiver.export.writer.PackageWriter` to a spool file
   (Bates numbers allocated a page at a time, each record followed by its attachments),
   then raw batches, then transcripts (``count_pages`` → allocate → render);
4. store a small statement of the export in the evidence store (``exports/<case>/…``:
   case, counts, the record list's SHA-256; no content) and log its ``export`` leaf, sign
   a later checkpoint, prove the leaf and the consistency, finish the package;
5. stream the package into the working area naming every subject whose content it
   holds (erasure deletes it), custody ``export_finished`` with the counts.

A failure records ``export_finished`` with state ``failed`` before the job fails; a
process killed mid-way leaves the job to the framework's takeover (resumed from step 2,
or failed as ``job_abandoned``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from archiver.audit import Actor, AuditAction
from archiver.errors import Conflict, InvalidInput
from archiver.export import transcript as tr
from archiver.export.erased import erased_in_scope
from archiver.export.gather import Gatherer, Plan
from archiver.export.model import (
    CustodyEvent,
    ExportInfo,
    ExportLeaf,
    LeafProof,
    LogBundle,
    PackageSeal,
    Transcript,
)
from archiver.export.writer import PackageWriter
from archiver.jobs.context import JobCancelled, JobContext, JobInterrupted, JobLost
from archiver.keys.envelope import KeyEncryptionKey
from archiver.keys.store import KeyStore
from archiver.keyspace import erasures_of, export_statement_key
from archiver.ledger.checkpoint_signer import CheckpointSigner
from archiver.ledger.entry import EntryKind, make_entry
from archiver.ledger.log import TransparencyLog
from archiver.records import canonical
from archiver.records.pseudonym import Pseudonymizer
from archiver.retention.common import contact_aliases
from archiver.store.port import LockMode, ObjectStore, Retention, StateStore
from archiver.subjects.identity import resolve_subject
from search.port import SearchIndex, SearchRequest

KIND = "export"
ARTIFACT = "export.zip"
BATES_PREFIX = re.compile(r"[A-Za-z0-9_-]{0,20}")
BATES_DIGITS = 8
# The start must fit the labels' width (1e9 was accepted, and the numbers it reserved
# made every later export of the case fail "does not fit 8 digits"); the allocator
# refuses numbers past the width before reserving them.
HIGHEST_BATES = 10**BATES_DIGITS - 1
MAX_BATES_START = HIGHEST_BATES
_CHECK_EVERY = 200
_CONTACT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # archiver.cases.model.CONTACT


@functools.cache
def _zone_names() -> frozenset[str]:
    """IANA zone names: ZoneInfo alone also opens ``localtime`` (the host's setting: a
    package would name a zone no one else can reproduce), ``posixrules`` and the
    leap-second ``right/`` variants (times off by the leap seconds)."""
    return frozenset(available_timezones()) - {"localtime"}


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What the requester may choose (validated here, for routes and CLI alike)."""

    bates_prefix: str = ""
    bates_start: int = 1
    include_media: bool = True
    include_raw: bool = False
    transcripts: bool = True
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        if not BATES_PREFIX.fullmatch(self.bates_prefix):
            raise InvalidInput("the Bates prefix must be at most 20 characters of "
                             "A-Z a-z 0-9 _ -", code="export_bates_prefix_invalid")  # fmt: skip
        if isinstance(self.bates_start, bool) or not 1 <= self.bates_start <= MAX_BATES_START:
            raise InvalidInput(f"the Bates start must be 1..{MAX_BATES_START}",
                             code="bates_start_invalid")  # fmt: skip
        try:
            if self.time_zone not in _zone_names():
                raise ZoneInfoNotFoundError(self.time_zone)
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"unknown time zone {self.time_zone!r}",
                             code="export_time_zone_invalid") from exc  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"bates_prefix": self.bates_prefix, "bates_start": self.bates_start,
                "include_media": self.include_media, "include_raw": self.include_raw,
                "transcripts": self.transcripts, "time_zone": self.time_zone}  # fmt: skip

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ExportOptions:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


class Cases(Protocol):
    """What the job needs of ``archiver.cases.service.CaseService`` (the composition root
    hands it the runtime's; export and cases are sibling services)."""

    audit: Any
    bates: Any  # archiver.cases.bates.BatesAllocator

    def get(self, case_id: str, actor: Actor) -> dict[str, Any]: ...

    def scope_documents(self, case_id: str, actor: Actor
                        ) -> Iterator[tuple[str, dict[str, Any] | None]]: ...  # fmt: skip

    def contact_documents(self, contact: str, numbers: Sequence[str] | None
                          ) -> Iterator[tuple[str, dict[str, Any] | None]]: ...  # fmt: skip

    def attachments(self, record_ids: Sequence[str]) -> list[Any]: ...

    def scope_request(self, case_id: str, actor: Actor) -> SearchRequest: ...

    def contact_request(self, contact: str, numbers: Sequence[str] | None
                        ) -> SearchRequest: ...  # fmt: skip

    def custody(self, case_id: str, actor: Actor) -> list[dict[str, Any]]: ...

    def export_requested(self, case_id: str, actor: Actor, *, export_id: str,
                         options: Mapping[str, Any]) -> dict[str, Any]: ...  # fmt: skip

    def export_finished(self, case_id: str, actor: Actor, *, export_id: str, state: str,
                        counts: Mapping[str, int], **details: Any) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ExportDeps:
    """What the job reads and writes (``export_deps(runtime)`` builds it)."""

    objects: ObjectStore
    state: StateStore
    index: SearchIndex
    keys: KeyStore
    kek: KeyEncryptionKey
    log: TransparencyLog
    checkpoints: CheckpointSigner
    cases: Cases
    lock_mode: LockMode
    log_retention_days: int
    workarea_delete: Callable[[str], None]
    spool_dir: Path | None = None
    # Resolves a custodian contact to its subject, to find erased records of the scope.
    pseudo: Pseudonymizer | None = None


def case_params(case_id: str, actor: Actor, options: ExportOptions) -> dict[str, Any]:
    return {"mode": "case", "case_id": case_id, "actor": _actor_json(actor),
            "options": options.to_json()}  # fmt: skip


def subject_params(contact: str, subject: str, actor: Actor,
                   options: ExportOptions) -> dict[str, Any]:  # fmt: skip
    """A subject access export: ``contact`` (wa_id or BSUID) as the scope's custodian,
    ``subject`` its pseudonym (for the log and the audit trail, never the contact)."""
    return {"mode": "subject", "contact": contact, "subject": subject,
            "actor": _actor_json(actor), "options": options.to_json()}  # fmt: skip


def subject_label(pseudo: Pseudonymizer, contact: str) -> str:
    """The keyed pseudonym a subject access export is logged and audited under (never
    the contact itself). Raises InvalidInput ``export_contact_invalid``."""
    contact = contact.strip()
    if not _CONTACT.fullmatch(contact):
        raise InvalidInput("contact must be a wa_id or a BSUID", code="export_contact_invalid")
    return pseudo.token("s_", "subject-access", contact_aliases(contact)[0])


def redact_subject_access(jobs: Any, state: StateStore, pseudo: Pseudonymizer,
                          phone_number_id: str, subjects: Sequence[str]) -> list[str]:  # fmt: skip
    """Erasure's hook (``ErasureService.job_redactors``): a subject access job whose contact
    resolves, at the erased number, to one of the erased subject ids keeps no trace of
    them: its contact and its pseudonym label leave its parameters (``erased: true``
    instead), its error messages go, and an unfinished one is cancelled. ``jobs`` is the
    ``JobService``. The contact is kept until then because the job needs it to run (the
    index finds a contact's records by the contact, across numbers; its subject ids are
    per number); the package it made is deleted by ``drop_subject``. Returns job ids."""
    wanted = set(subjects)

    def matches(job: Any) -> bool:
        p = job.params
        contact = p.get("contact")
        if p.get("mode") != "subject" or not isinstance(contact, str) or not contact:
            return False
        return resolve_subject(state, pseudo, phone_number_id, contact) in wanted

    def params(p: Mapping[str, Any]) -> dict[str, Any]:
        return {"mode": "subject", "erased": True, "actor": p.get("actor"),
                "options": p.get("options")}  # fmt: skip

    ids: list[str] = jobs.redact(KIND, matches, params)
    return ids


def case_custodian(case: Mapping[str, Any]) -> str:
    """The CUSTODIAN of a case's rows: what the case covers, never the acting token: its
    custodian numbers, else the numbers of its scope ("all numbers" only for a case of
    every number), then its custodian contacts (an erased one as its ``erased:<erasure
    id>`` marker)."""
    custodians = case.get("custodians") or {}
    numbers = custodians.get("numbers") or case.get("numbers")
    named = [str(n) for n in numbers] if numbers else ["all numbers"]
    return ", ".join([*named, *(str(c) for c in custodians.get("contacts") or [])])


def _actor_json(actor: Actor) -> dict[str, Any]:
    return {"token_id": actor.token_id, "name": actor.name, "role": actor.role,
            "numbers": None if actor.numbers is None else list(actor.numbers)}  # fmt: skip


def _actor(doc: Mapping[str, Any]) -> Actor:
    numbers = doc.get("numbers")
    return Actor(token_id=doc.get("token_id"), name=str(doc.get("name") or "unknown"),
                 role=str(doc.get("role") or ""),
                 numbers=None if numbers is None else tuple(numbers))  # fmt: skip


def _bundle(checkpoints: CheckpointSigner, log: TransparencyLog) -> LogBundle:
    checkpoints.sign_if_grown()
    signed = checkpoints.latest_signed()
    if signed is None:
        raise InvalidInput("the log is empty: nothing to export", code="export_empty_log")
    return LogBundle.from_note(signed.note, signed.verifier, log.origin)


class ExportRun:
    """One attempt of one export job."""

    def __init__(self, deps: ExportDeps, ctx: JobContext) -> None:
        self.d, self.ctx = deps, ctx
        p = ctx.params
        self.mode = str(p.get("mode"))
        self.actor = _actor(p.get("actor") or {})
        self.options = ExportOptions.from_json(p.get("options") or {})
        self.export_id = ctx.job.id
        self.counts: dict[str, int] = {}
        self.numbers: tuple[str, ...] | None = None  # set by _scope

    # -- what is exported ------------------------------------------------------------------

    def _scope(self) -> tuple[str, str, dict[str, Any],
                              Iterator[tuple[str, dict[str, Any] | None]], str]:  # fmt: skip
        """(case id, case name, query, record ids with the index documents the scope walk
        read them from, custodian) of the export; sets ``self.numbers``, the business
        numbers it may show (None: every number)."""
        p = self.ctx.params
        if self.mode == "case":
            case_id = str(p["case_id"])
            doc = self.d.cases.get(case_id, self.actor)
            query = {"scope": doc["scope"], "custodians": doc["custodians"]}
            custodian = case_custodian(doc)
            scope = doc.get("numbers")
            self.numbers = None if scope is None else tuple(str(n) for n in scope)
            self._within_job_numbers(case_id, self.numbers)
            ids = chain(self.d.cases.scope_documents(case_id, self.actor),
                        self._erased(self.d.cases.scope_request(case_id, self.actor)))
            return case_id, str(doc["name"]), query, ids, custodian
        if self.mode == "subject":
            contact, subject = str(p["contact"]), str(p["subject"])
            numbers = self.actor.numbers
            self.numbers = None if numbers is None else tuple(numbers)
            ids = chain(self.d.cases.contact_documents(contact, numbers),
                        self._erased(self.d.cases.contact_request(contact, numbers)))
            query = {"subject": subject,
                     "numbers": None if numbers is None else list(numbers)}  # fmt: skip
            return f"sar-{subject}", f"Subject access: {subject}", query, ids, subject
        raise InvalidInput(f"unknown export mode {self.mode!r}", code="export_mode_invalid")

    def _within_job_numbers(self, case_id: str, numbers: tuple[str, ...] | None) -> None:
        """The job's visibility (``job.numbers``, the case's numbers when it was requested)
        is fixed at submission: a case widened since (an unscoped token added a number)
        would write another number's records into a package that a token of the old
        numbers may download. Refused; export again to export the wider case."""
        allowed = self.ctx.job.numbers
        if allowed is None:
            return
        if numbers is None or not set(numbers) <= set(allowed):
            raise Conflict(f"case {case_id} now covers numbers this export was not requested "
                           "for; export again", code="export_scope_changed",
                           details={"requested_for": list(allowed),
                                    "case_numbers": None if numbers is None
                                    else list(numbers)})  # fmt: skip

    def _erased(self, request: SearchRequest) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """Erased records of the scope (``archiver.export.erased``): the index no longer
        has them, their tombstones come from the erasures. After the scope's own ids."""
        if self.d.pseudo is None:
            return
        erased = erased_in_scope(objects=self.d.objects, state=self.d.state,
                                 index=self.d.index, pseudo=self.d.pseudo,
                                 query=request.q, numbers=request.scope_numbers)  # fmt: skip
        for record_id in erased:
            yield record_id, None

    # -- the attempt ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        if self.ctx.params.get("erased"):  # its subject was erased: nothing left to name
            raise Conflict("the data subject of this request was erased",
                           code="export_subject_erased")  # fmt: skip
        resume = self.ctx.resume_state() or {}
        case_id = str(self.ctx.params.get("case_id") or "")
        if self.mode == "case" and not resume.get("requested"):
            self.d.cases.export_requested(case_id, self.actor, export_id=self.export_id,
                                          options=self.options.to_json())  # fmt: skip
            self.ctx.checkpoint({"requested": True})
        elif self.mode == "subject" and not resume.get("requested"):
            self._audit(AuditAction.EXPORT_REQUESTED, subject=self.ctx.params["subject"],
                        kind="subject_access")  # fmt: skip
            self.ctx.checkpoint({"requested": True})
        try:
            result = self._build()
        except (JobInterrupted, JobLost):
            raise  # resumed by the next start / the runner that took it over
        except BaseException as exc:
            code = "cancelled" if isinstance(exc, JobCancelled) else getattr(
                exc, "code", "export_internal")
            self._finished("cancelled" if code == "cancelled" else "failed",
                           error=str(code))  # fmt: skip
            raise
        self._finished("done", manifest_records_sha256=result["records_sha256"],
                       artifact_sha256=result["artifact"]["sha256"])  # fmt: skip
        return result

    def _finished(self, state: str, **details: Any) -> None:
        if self.mode == "case":
            self.d.cases.export_finished(str(self.ctx.params["case_id"]), self.actor,
                                         export_id=self.export_id, state=state,
                                         counts=self.counts, **details)  # fmt: skip
        else:
            self._audit(AuditAction.EXPORT_FINISHED, subject=self.ctx.params["subject"],
                        kind="subject_access", state=state, counts=dict(self.counts),
                        **details)  # fmt: skip

    def _audit(self, action: AuditAction, **details: Any) -> None:
        audit = self.d.cases.audit
        if audit is not None:
            audit.record(action, self.actor, export_id=self.export_id, **details)

    def _build(self) -> dict[str, Any]:
        case_id, case_name, query, ids, custodian = self._scope()
        opts = self.options
        now = datetime.now(UTC)
        info = ExportInfo(
            case_id=case_id, case_name=case_name, exported_by=self.actor.name,
            exported_at=now, query=query, time_zone=opts.time_zone,
            bates_prefix=opts.bates_prefix, bates_digits=BATES_DIGITS,
            matter_number=str(self._case_field(case_id, "matter_number")),
        )  # fmt: skip
        gatherer = Gatherer(objects=self.d.objects, state=self.d.state, index=self.d.index,
                            keys=self.d.keys, kek=self.d.kek, log=self.d.log,
                            attachments_of=self.d.cases.attachments, custodian=custodian)
        with tempfile.TemporaryDirectory(prefix="wa-export-", dir=self.d.spool_dir) as tmp:
            spool = Path(tmp)
            plan = gatherer.plan(ids, spool / "plan.db",
                                 progress=lambda n: self.ctx.progress(0, None, listed=n))
            try:
                self.ctx.progress(0, plan.count, listed=plan.count)
                self.ctx.raise_if_cancelled()
                return self._package(info, gatherer, plan, spool)
            finally:
                plan.close()

    def _case_field(self, case_id: str, name: str) -> Any:
        if self.mode != "case":
            return ""
        return self.d.cases.get(case_id, self.actor).get(name) or ""

    def _allocate(self, case_id: str, ids: list[str]) -> dict[str, int]:
        numbers: dict[str, int] = self.d.cases.bates.allocate(
            case_id, ids, start=self.options.bates_start, highest=HIGHEST_BATES)
        return numbers

    def _package(self, info: ExportInfo, gatherer: Gatherer, plan: Plan,
                 spool: Path) -> dict[str, Any]:  # fmt: skip
        opts = self.options
        bundle = _bundle(self.d.checkpoints, self.d.log)
        bates: dict[str, int] = {}  # this page's numbers only: memory stays flat

        def number(ids: list[str]) -> None:
            bates.clear()
            bates.update(self._allocate(info.case_id, ids))

        path = spool / ARTIFACT
        with path.open("wb") as sink, PackageWriter(sink, info, bundle, bates,
                                                    spool_dir=spool) as w:  # fmt: skip
            items = gatherer.items(plan, bundle.tree_size, number=number,
                                   include_media=opts.include_media,
                                   include_raw=opts.include_raw)  # fmt: skip
            for done, g in enumerate(items, start=1):
                w.add(g.item)
                if g.message is not None and (opts.transcripts or self.mode == "subject"):
                    plan.note_message(g.item.conversation_id, g.seq, g.message)
                if done % _CHECK_EVERY == 0:
                    self.ctx.progress(done, plan.count, records=done,
                                      erased=gatherer.stats.erased)  # fmt: skip
                    self.ctx.raise_if_cancelled()
            if opts.include_raw:
                for batch in gatherer.raw_batches(plan, self.ctx.error, self.numbers):
                    w.add_raw_batch(batch)
            if opts.transcripts or self.mode == "subject":
                self._transcripts(w, plan, info)
            if self.mode == "subject":
                w.add_document("subject-access.json", _subject_json(plan))
            self.ctx.raise_if_cancelled()
            digest = w.records_list_digest()
            counts = w.counts
            seal = w.seal(self._custody(info.case_id))
            leaf = self._log_export(info, digest, counts, seal, bundle, now=info.exported_at)
            summary = w.finish(leaf)
        self.counts = {**counts, "files": summary.files, "missing": gatherer.stats.missing}
        self.ctx.progress(plan.count, plan.count, **self.counts)
        subjects = sorted(gatherer.stats.subjects)
        with path.open("rb") as f:
            ref = self.ctx.write_artifact(ARTIFACT, f, content_type="application/zip",
                                          subjects=subjects)  # fmt: skip
        self._erased_meanwhile(subjects, info.exported_at, gatherer)
        return {"records_sha256": digest, "counts": self.counts,
                "export_leaf": leaf.leaf.leaf_index, "checkpoint_size": bundle.tree_size,
                "artifact": {"name": ARTIFACT, "sha256": ref.sha256, "size": ref.size}}

    def _erased_meanwhile(self, subjects: Sequence[str], since: datetime,
                          gatherer: Gatherer) -> None:  # fmt: skip
        """An erasure that ran while this export did may have dropped artifacts before
        ours existed: then ours must go too, and the export fails (run it again: the
        subject's records are tombstones now). Decided by the keys themselves, after the
        package is stored: a key whose plaintext is in the package destroyed since the
        export first read a key (``keys/epoch`` moved). A shred that begins after this
        check raised the epoch after the package was stored, so the erasure's
        ``artifacts`` step, which follows its shred, finds and deletes the package. The
        erasures begun since the export started (by their time) are checked too."""
        if gatherer.keys_destroyed_since_start():
            self._erased_fail()
        cutoff = since - timedelta(seconds=5)
        for subject in subjects:
            for key in self.d.state.list(erasures_of(subject)):
                value = self.d.state.get(key)
                doc = json.loads(value.value) if value is not None else {}
                when = _time(str(doc.get("when") or "").replace("Z", "+00:00"))
                if doc.get("status") != "refused" and when is not None and when >= cutoff:
                    self._erased_fail()

    def _erased_fail(self) -> None:
        self.d.workarea_delete(self.ctx.artifact_key(ARTIFACT))
        raise Conflict("a subject of this export was erased while it ran; export again",
                       code="export_subject_erased")

    def _transcripts(self, w: PackageWriter, plan: Plan, info: ExportInfo) -> None:
        tz = ZoneInfo(info.time_zone)
        heading_title = ("Subject access: all records" if self.mode == "subject"
                         else "Transcript")  # fmt: skip
        heading = tr.TranscriptHeading(heading_title, f"{info.case_name} {info.matter_number}"
                                       .strip(), generated_at=info.exported_at)  # fmt: skip
        convs = plan.transcript_conversations()
        if self.mode == "subject":  # one PDF, a section per conversation
            groups = [("subject-access", convs)] if convs else []
        else:
            groups = [(c, [c]) for c in convs]
        for name, members in groups:
            sections = [tr.TranscriptSection(c, [_message(m) for m in plan.messages(c)])
                        for c in members]  # fmt: skip
            pages = tr.count_pages(heading, sections, tz=tz, bates_width=BATES_DIGITS)
            numbers = self._allocate(info.case_id,
                                     [f"{self.export_id}/{name}/p{i}" for i in range(pages)])
            first = min(numbers.values())
            pdf = tr.render_transcript(heading, sections, tz=tz,
                                       bates=tr.Bates(info.bates_prefix, first, BATES_DIGITS))
            if pdf.pages != pages:
                raise InvalidInput(f"transcript {name}: {pdf.pages} pages, {pages} counted",
                                 code="export_transcript_pages")  # fmt: skip
            w.add_transcript(Transcript(name, pdf.data, pdf.pages, first, info.case_name))

    def _log_export(self, info: ExportInfo, digest: str, counts: Mapping[str, int],
                    seal: PackageSeal, first: LogBundle, *,
                    now: datetime) -> ExportLeaf:  # fmt: skip
        """A statement of the export in the evidence store, its ``export`` leaf (naming
        the record list and the seal: every file of the package), a later checkpoint,
        the leaf's inclusion and the consistency proofs."""
        query_sha = hashlib.sha256(canonical.dumps(info.query)).hexdigest()
        statement = canonical.dumps({
            "export_id": self.export_id, "case": info.case_id, "records": counts["records"],
            "records_sha256": digest, "query_sha256": query_sha, "counts": dict(counts),
            "exported_at": now.isoformat(), "exported_by": self.actor.token_id,
            **seal.entry_fields(),
        })  # fmt: skip
        # A retried attempt writes (and logs) its own statement.
        key = export_statement_key(info.case_id, self.export_id, self.ctx.job.attempts,
                                   secrets.token_hex(4))
        retain = now + timedelta(days=self.d.log_retention_days)
        put = self.d.objects.put(key, statement, retention=Retention(self.d.lock_mode, retain),
                                 content_type="application/json")  # fmt: skip
        entry = make_entry(
            EntryKind.EXPORT, time=now, key=key, version_id=put.version_id, sha256=put.sha256,
            size=put.size, retain_until=retain, case=info.case_id, records=counts["records"],
            records_sha256=digest, query_sha256=query_sha, **seal.entry_fields(),
        )  # fmt: skip
        index = self.d.log.append([entry.data])[0]
        later = _bundle(self.d.checkpoints, self.d.log)
        proof = tuple(self.d.log.inclusion_proof(index, later.tree_size))
        consistency = tuple(self.d.log.consistency_proof(first.tree_size, later.tree_size))
        return ExportLeaf(LeafProof(entry.data, index, proof), later, consistency)

    def _custody(self, case_id: str) -> list[CustodyEvent]:
        if self.mode != "case":
            return [CustodyEvent(datetime.now(UTC), self.actor.name, "export:requested",
                                 {"subject": self.ctx.params["subject"]})]  # fmt: skip
        out = []
        for e in self.d.cases.custody(case_id, self.actor):
            at = datetime.fromisoformat(str(e["at"]).replace("Z", "+00:00"))
            who = (e.get("actor") or {}).get("name") or "unknown"
            out.append(CustodyEvent(at, str(who), str(e["action"]),
                                    {"details": e.get("details"), "counts": e.get("counts")}))
        return out


def _subject_json(plan: Plan) -> Iterator[bytes]:
    """Every message of the subject, readable (Art. 15): one JSON object, conversation by
    conversation, streamed from the spool."""
    yield b'{"format":"wa-archiver-subject-access/1","conversations":['
    for n, conv in enumerate(plan.transcript_conversations()):
        body = json.dumps({"conversation": conv, "messages": plan.messages(conv)},
                          ensure_ascii=False, indent=1)  # fmt: skip
        yield (b"," if n else b"") + body.encode()
    yield b"]}\n"


def _time(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def _message(m: Mapping[str, Any]) -> tr.TranscriptMessage:
    origins = {"customer": tr.Origin.CONTACT, "business_app": tr.Origin.BUSINESS_APP,
               "api": tr.Origin.CLOUD_API, "history_sync": tr.Origin.HISTORY_SYNC}
    sent = datetime.fromisoformat(m["sent_at"])
    origin = origins.get(str(m.get("origin")), tr.Origin.UNKNOWN)
    if m.get("tombstone"):
        at, request = m["tombstone"]
        return tr.TranscriptMessage(m["record_id"], sent, m["sender"], m["from_business"],
                                    origin, tombstone=tr.Tombstone(datetime.fromisoformat(at),
                                                                   request))  # fmt: skip
    revoked = m.get("revoked_at")
    return tr.TranscriptMessage(
        m["record_id"], sent, m["sender"], m["from_business"], origin, text=m.get("text", ""),
        attachments=tuple(m.get("attachments") or ()),
        edits=tuple(tr.Edit(datetime.fromisoformat(a), p, n) for a, p, n in m.get("edits") or ()),
        reactions=tuple(m.get("reactions") or ()), status=m.get("status") or "",
        revoked_at=_time(str(revoked).replace("Z", "+00:00")) if revoked else None,
    )  # fmt: skip


def export_orphan_final(deps: Callable[[], ExportDeps]) -> Callable[[Any], None]:
    """``on_orphan_final`` of the ``export`` kind: an export whose runner died on its last
    attempt (failed ``job_abandoned``) or was cancelled meanwhile never ran
    :meth:`ExportRun._finished`; its case's chain of custody (or, for subject access, the
    audit trail) records the end here, as an attempt that ends by itself does."""

    def final(job: Any) -> None:
        p = job.params
        actor = _actor(p.get("actor") or {})
        errors = [str(e.get("code")) for e in (job.errors or ()) if isinstance(e, Mapping)]
        error = errors[-1] if errors else str(job.state)
        state = "cancelled" if str(job.state) == "cancelled" else "failed"
        d = deps()
        if p.get("mode") == "case":
            d.cases.export_finished(str(p["case_id"]), actor, export_id=job.id, state=state,
                                    counts={}, error=error)  # fmt: skip
        elif d.cases.audit is not None:
            d.cases.audit.record(AuditAction.EXPORT_FINISHED, actor, export_id=job.id,
                                 subject=p.get("subject"), kind="subject_access",
                                 state=state, counts={}, error=error)  # fmt: skip

    return final


def export_handler(deps: Callable[[], ExportDeps]) -> Callable[[JobContext], dict[str, Any]]:
    """The ``export`` job handler for ``JobService.register``; ``deps`` is called per
    attempt (the runtime it reads may be rebuilt)."""

    def run(ctx: JobContext) -> dict[str, Any]:
        return ExportRun(deps(), ctx).run()

    return run
