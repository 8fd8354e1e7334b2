"""The report job: gather → compute → twin → HTML → PDF/A-3b → PAdES → locked store + log.

``ReportService.register(jobs)`` adds the handler of kind ``report`` to a
``JobService``. Each run pins one signed checkpoint, gathers the facts
(``archiver.reporting.gather``), runs the pure pipeline of ``reports`` and signs the PDF
with the archive's report-signing key (``ARCHIVER_REPORT_SIGNING_KEY`` / ``_CERT``, RSA or
P-256; never the log's Ed25519 key). The signed PDF and its twin are written write-once
to the evidence store under a retention lock (a report names no customer, so locking it
cannot get in the way of an erasure) at ``reports/<regulation>/<job id>.pdf|.json``, and
one ``report`` log leaf per object names the regulation, period, twin SHA-256 and the
checkpoint covered (so the next report proves consistency from it). The job's result
references both objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from archiver.errors import ConfigError, NotFound
from archiver.jobs.durable import JobContext, JobService
from archiver.keyspace import report_object_key
from archiver.ledger.entry import EntryKind, make_entry
from archiver.reporting.gather import ReportGatherer, ReportRequest
from archiver.settings import Mode, Settings
from archiver.store.port import LockMode, ObjectStore, Retention
from reports.compute import compute_report
from reports.pdf import render_pdf
from reports.render import render_html
from reports.signing import generate_dev_signing_pair, load_signer, sign_report
from reports.twin import twin_bytes, twin_sha256

KIND = "report"
DEV_KEY_FILE = "report-signing-key.pem"
DEV_CERT_FILE = "report-signing-cert.pem"
# Weights of the gather stages (percent of the job's progress).
_STAGES = {"log": 10, "index": 25, "sections": 5, "locks": 40, "compute": 5}


@dataclass(frozen=True, slots=True)
class SigningMaterial:
    key_pem: bytes
    cert_pem: bytes
    tsa_url: str | None = None


def _pem_or_path(value: str, what: str) -> bytes:
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    path = Path(text)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def load_signing_material(settings: Settings) -> SigningMaterial:
    """The report-signing pair from settings. Dev mode without one: a self-signed P-256
    pair generated once into the data folder (0600). Production without one: ConfigError.
    The pair is checked (key matches certificate, certificate valid now) before use."""
    key_value = settings.report_signing_key.get_secret_value()
    tsa = settings.report_tsa_url.strip() or None
    if key_value.strip() and settings.report_signing_cert.strip():
        material = SigningMaterial(_pem_or_path(key_value, "ARCHIVER_REPORT_SIGNING_KEY"),
                                   _pem_or_path(settings.report_signing_cert,
                                                "ARCHIVER_REPORT_SIGNING_CERT"), tsa)
    elif key_value.strip() or settings.report_signing_cert.strip():
        raise ConfigError("ARCHIVER_REPORT_SIGNING_KEY and ARCHIVER_REPORT_SIGNING_CERT "
                          "go together: set both or neither")
    elif settings.mode is Mode.PRODUCTION:
        raise ConfigError("production mode requires ARCHIVER_REPORT_SIGNING_KEY and "
                          "ARCHIVER_REPORT_SIGNING_CERT")
    else:
        material = SigningMaterial(*_dev_pair(settings.data_dir, settings.log_origin), tsa)
    try:
        load_signer(material.key_pem, material.cert_pem)
    except Exception as exc:  # reports.signing.SigningKeyError and friends
        raise ConfigError(f"report-signing key or certificate unusable: {exc}") from None
    return material


def _dev_pair(data_dir: Path, origin: str) -> tuple[bytes, bytes]:
    key_path, cert_path = data_dir / DEV_KEY_FILE, data_dir / DEV_CERT_FILE
    if key_path.exists() and cert_path.exists():
        return key_path.read_bytes(), cert_path.read_bytes()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_pem, cert_pem = generate_dev_signing_pair(f"{origin} report signing (dev)")
    for path, data in ((cert_path, cert_pem), (key_path, key_pem)):  # key last: the marker
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    return key_pem, cert_pem


class ReportService:
    """Runs report jobs and reads their results."""

    def __init__(
        self,
        *,
        gatherer: ReportGatherer,
        objects: ObjectStore,
        log: Any,  # TransparencyLog: append
        signing: SigningMaterial,
        lock_mode: str,
        retention_days: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.gatherer = gatherer
        self.objects = objects
        self.log = log
        self.signing = signing
        self.lock_mode = LockMode(lock_mode)
        self.retention_days = retention_days
        self.clock = clock

    def register(self, jobs: JobService) -> None:
        jobs.register(KIND, self.run)

    # -- the handler --------------------------------------------------------------------

    def run(self, ctx: JobContext) -> dict[str, Any]:
        req = ReportRequest.from_json(dict(ctx.params))
        base = {"log": 0, "index": 10, "sections": 35, "locks": 40, "compute": 80}

        def progress(stage: str, done: int, total: int) -> None:
            share = done / total if total else 1.0
            ctx.progress(base[stage] + int(share * _STAGES[stage]), 100,
                         **{f"{stage}_done": done, f"{stage}_total": total})
            ctx.raise_if_cancelled()

        facts = self.gatherer.gather(req, progress)
        result = self.produce(facts, report_id=ctx.job.id, on_step=lambda p: ctx.progress(
            p, 100))
        ctx.progress(100, 100)
        return result

    def produce(self, facts: Any, *, report_id: str,
                on_step: Callable[[int], None] = lambda _p: None) -> dict[str, Any]:
        """The pure pipeline on gathered facts, then store, lock and log. Returns the
        job's result."""
        report = compute_report(facts)
        twin = twin_bytes(report)
        sha = twin_sha256(twin)
        now = self.clock()
        html = render_html(report, sha, generated_at=now, report_id=report_id)
        on_step(88)
        regulation = facts.scope.regulation.value
        pdf = render_pdf(html, twin, title=f"{regulation.upper()} audit report {report_id}",
                         generated_at=now)
        on_step(93)
        signed = sign_report(pdf, key_pem=self.signing.key_pem, cert_pem=self.signing.cert_pem,
                             tsa_url=self.signing.tsa_url)
        on_step(97)
        until = now + timedelta(days=self.retention_days)
        retention = Retention(self.lock_mode, until)
        cp = facts.integrity.checkpoint
        common = {
            "regulation": regulation,
            "period_start": _iso(facts.scope.period.start),
            "period_end": _iso(facts.scope.period.end),
            "twin_sha256": sha,
            "tree_size": cp.size,
            "root_hash": cp.root_hash,
        }
        stored: dict[str, dict[str, Any]] = {}
        entries = []
        for part, data, ctype in (("twin", twin, "application/json"),
                                  ("pdf", signed, "application/pdf")):
            key = report_object_key(regulation, report_id, "json" if part == "twin" else "pdf")
            put = self.objects.put(key, data,
                                   retention=retention, content_type=ctype)
            stored[part] = {"key": put.key, "version_id": put.version_id,
                            "sha256": put.sha256, "size": put.size}
            entries.append(make_entry(EntryKind.REPORT, time=now, key=put.key,
                                      version_id=put.version_id, sha256=put.sha256,
                                      size=put.size, retain_until=until, part=part,
                                      **common).data)
        leaves = self.log.append(entries)
        return {
            **common,
            "report_id": report_id,
            "pdf": stored["pdf"],
            "twin": stored["twin"],
            "leaves": leaves,
            "lock": {"mode": self.lock_mode.value, "retain_until": _iso(until)},
            "findings": {f.code: f.count for f in report.findings},
            "lock_check": {"mode": facts.lock_check.mode.value,
                           "population": facts.lock_check.population,
                           "read": facts.lock_check.read, "seed": facts.lock_check.seed},
        }

    # -- reading results ----------------------------------------------------------------

    def read_part(self, result: dict[str, Any], part: str) -> bytes:
        ref = result.get(part)
        if not isinstance(ref, dict):
            raise NotFound("the report has no such part", code="report_not_found")
        return self.objects.get(str(ref["key"]), str(ref["version_id"]))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def twin_of(data: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(data)
    return parsed
