"""Settings from ``ARCHIVER_*`` environment variables and an optional TOML file.

One settings object, built by ``get_settings()`` (cached) and injected everywhere;
nothing is read at import time. Environment variables win over the file named by
``ARCHIVER_CONFIG_FILE``. Unknown keys in the file are rejected.

``ARCHIVER_MODE=production`` refuses to start (``ConfigError`` with a one-line reason)
on missing or default secrets, on the embedded local store or index, and on plain-HTTP
S3 to a non-loopback host. In ``dev`` mode missing secrets are generated once and kept
in ``<data_dir>/dev-secrets.json`` so that restarts keep reading the archive.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from archiver.errors import ConfigError

# Values that must never be used outside dev mode: they appear in docs and examples.
KNOWN_DEFAULT_SECRETS = frozenset(
    {"", "changeme", "change-me", "secret", "minioadmin", "password", "test", "dev"}
)


class Mode(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class StoreKind(StrEnum):
    LOCAL = "local"
    S3 = "s3"


class StateKind(StrEnum):
    """Where working state lives. ``default``: the SQLite file (local store) or the state
    bucket (S3 store). ``postgres``: a PostgreSQL database (``ARCHIVER_STATE_DSN``), the
    shreddable prefixes staying on the default one (archiver.store.state_route)."""

    DEFAULT = "default"
    POSTGRES = "postgres"


class IndexKind(StrEnum):
    SQLITE = "sqlite"
    ELASTICSEARCH = "elasticsearch"


# As reports.facts.Regulation and archiver.reporting.schedule.CADENCES (settings import
# neither); tests/unit/reporting/test_schedule.py keeps them equal.
REPORT_REGULATIONS = ("gdpr", "hipaa", "finra")
# Capture's waits for company (ms) at most: a webhook's 200 waits for them.
CAPTURE_WAIT_MAX_MS = 1000.0


class Settings(BaseSettings):
    """Every field is documented in the README's configuration table (a test checks)."""

    model_config = SettingsConfigDict(
        env_prefix="ARCHIVER_",
        extra="forbid",
        case_sensitive=False,
        frozen=True,
    )

    mode: Mode = Mode.DEV
    config_file: Path | None = None
    data_dir: Path = Path("archive-data")
    log_level: str = "INFO"

    store: StoreKind = StoreKind.LOCAL
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: SecretStr = SecretStr("")
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = False
    s3_region: str | None = None
    evidence_bucket: str = "wa-evidence"
    state_bucket: str = "wa-state"
    state: StateKind = StateKind.DEFAULT
    # libpq connection string or URI; holds a password, hence secret.
    state_dsn: SecretStr = SecretStr("")
    # Finished job artifacts (exports, reports): unlocked, unversioned (archiver.jobs.workarea).
    workarea_bucket: str = "wa-workarea"
    workarea_expiry_days: float = Field(default=7.0, gt=0)
    # Job attempts' scratch files (an export's plan and partial package: decrypted content);
    # None = <data_dir>/spool. A killed process's leftovers are deleted (archiver.jobs.spool).
    spool_dir: Path | None = None
    # Durable jobs (archiver.jobs.durable): handlers run at once per process, the heartbeat
    # age after which a running job is presumed orphaned, and attempts before giving up.
    jobs_concurrency: int = Field(default=2, ge=1)
    jobs_heartbeat_ttl_s: float = Field(default=60.0, ge=0.5)
    jobs_max_attempts: int = Field(default=3, ge=1)

    index: IndexKind = IndexKind.SQLITE
    es_url: str = "http://127.0.0.1:9200"
    es_alias: str = "wa-messages"

    # Webhook: Meta app secrets (comma-separated; several for rotation / several WABAs).
    app_secrets: SecretStr = SecretStr("")
    verify_token: SecretStr = SecretStr("")
    # Keyed-HMAC pseudonyms, key-encryption key, checkpoint signing key.
    pseudonym_key: SecretStr = SecretStr("")
    kek: SecretStr = SecretStr("")
    kek_file: Path | None = None
    signing_key: SecretStr = SecretStr("")
    signing_key_file: Path | None = None
    log_origin: str = "wa-archiver.local/log"
    # Extra verifier keys to trust for old checkpoints (comma-separated C2SP key texts).
    trusted_keys: str = ""
    verify_sample: int = Field(default=1000, ge=1)
    verify_interval_s: float = Field(default=86400.0, gt=0)
    disposition_interval_s: float = Field(default=3600.0, gt=0)

    graph_base_url: str = "https://graph.facebook.com"
    graph_version: str = "v23.0"
    graph_token: SecretStr = SecretStr("")

    lock_mode: str = "COMPLIANCE"
    raw_retention_days: int = Field(default=2190, ge=1)
    policy_dir: Path | None = None
    # Built-in policies to enable (comma-separated ids, e.g. "finra_4511,gdpr").
    policies: str = ""
    # Policy parameters "policy.name=value" (comma-separated), e.g. "gdpr.max_period=P3Y".
    policy_params: str = ""
    log_retention_days: int = Field(default=3653, ge=1)
    # Signed audit reports (archiver.reporting): the report-signing key and certificate
    # (RSA or P-256; a file path or the PEM itself), an optional RFC 3161 timestamp
    # authority (PAdES B-LT), the silence threshold of watched numbers, and scheduled runs
    # ("gdpr:monthly,finra:monthly"; each covers the previous calendar month).
    report_signing_key: SecretStr = SecretStr("")
    report_signing_cert: str = ""
    report_tsa_url: str = ""
    report_silence_threshold_s: int = Field(default=7 * 86400, ge=60)
    report_lock_sample: int = Field(default=10_000, ge=0)
    report_schedule: str = ""
    inline_workers: bool = True
    # Raw batches processed at once per process (each waits mostly on the store).
    processing_workers: int = Field(default=4, ge=1)
    # How often a process without capture (``archiver worker``) looks for new raw batches;
    # an app process hears of its own captures at once and sweeps only as a safety net.
    worker_sweep_s: float = Field(default=1.0, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=3 * 1024 * 1024)
    capture_batch_max: int = Field(default=128, ge=1)
    # Concurrent group-commit writes: few and large beat many and small on one MinIO.
    capture_inflight: int = Field(default=4, ge=1)
    # A write's wait for company, bounded: a delivery's answer waits for it (an endless
    # one, ``inf``, would hold a delivery until capture_batch_max others came).
    capture_batch_wait_ms: float = Field(default=4.0, ge=0, le=CAPTURE_WAIT_MAX_MS)
    # ... and while this process's processing is behind (raw batches wait for a worker):
    # larger raw batches then cost processing less per delivery, and a delivery's time to
    # searchable is the backlog's anyway, not this wait (archiver.ingest.capture).
    capture_batch_busy_wait_ms: float = Field(default=50.0, ge=0, le=CAPTURE_WAIT_MAX_MS)
    # Freeze the runtime and raise the GC thresholds while serving (archiver.api.gc_tuning).
    gc_tuning: bool = True
    # Audit events queued in memory at most (store down): kept events beyond → 503.
    audit_queue_max: int = Field(default=10_000, ge=100)
    checkpoint_interval_s: float = Field(default=10.0, gt=0)
    silence_alert_hours: float = Field(default=24.0, gt=0)
    stop_keywords: str = "STOP,UNSUBSCRIBE,PARAR,BAJA,STOPP,ARRET,ARRÊT"
    start_keywords: str = "START,SUBSCRIBE,UNSTOP,ALTA,COMEÇAR"

    @field_validator("lock_mode")
    @classmethod
    def _lock_mode(cls, value: str) -> str:
        if value not in ("COMPLIANCE", "GOVERNANCE"):
            raise ValueError("must be COMPLIANCE or GOVERNANCE")
        return value

    @field_validator("report_schedule")
    @classmethod
    def _report_schedule(cls, value: str) -> str:
        # Checked with the other settings, so a typo is a clear config error before the
        # service starts, not a traceback from the scheduler at startup.
        for part in (p.strip() for p in value.split(",") if p.strip()):
            regulation, _, cadence = part.partition(":")
            if regulation.strip() not in REPORT_REGULATIONS or cadence.strip() != "monthly":
                raise ValueError(f"{part!r}: want REGULATION:monthly, REGULATION one of "
                                 f"{', '.join(REPORT_REGULATIONS)}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("ARCHIVER_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    # -- derived values -------------------------------------------------------------

    def app_secret_list(self) -> list[bytes]:
        raw = self.app_secrets.get_secret_value()
        return [s.strip().encode() for s in raw.split(",") if s.strip()]

    def policy_parameters(self) -> dict[str, str]:
        params = {
            f"{pid.strip()}.enabled": "true" for pid in self.policies.split(",") if pid.strip()
        }
        for pair in self.policy_params.split(","):
            if "=" in pair:
                name, value = pair.split("=", 1)
                params[name.strip()] = value.strip()
        return params

    def keywords(self, which: str) -> frozenset[str]:
        raw = self.stop_keywords if which == "stop" else self.start_keywords
        return frozenset(k.strip().casefold() for k in raw.split(",") if k.strip())


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_state_dsn(dsn: str) -> None:
    """Production: a Postgres state database off loopback only over verified TLS."""
    from psycopg import conninfo  # only when Postgres state is configured

    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError: an unparseable DSN
        raise ConfigError(
            f"ARCHIVER_STATE_DSN is not a PostgreSQL connection string: {str(exc).strip()}"
        ) from exc
    # No host, or a folder: a Unix socket on this machine.
    hosts = [h for h in str(params.get("host") or "").split(",") if h and not h.startswith("/")]
    remote = [h for h in hosts if not _is_loopback(h)]
    if remote and params.get("sslmode") not in ("verify-full", "verify-ca"):
        raise ConfigError(
            f"production mode refuses PostgreSQL state on non-loopback host {remote[0]} "
            "without sslmode=verify-full (or verify-ca) in ARCHIVER_STATE_DSN"
        )


def check_production(settings: Settings) -> None:
    """Raise ConfigError with a one-line reason when production safety rules are broken."""
    if settings.mode is not Mode.PRODUCTION:
        return
    if settings.store is StoreKind.LOCAL:
        raise ConfigError("production mode refuses the local folder store: set ARCHIVER_STORE=s3")
    if settings.index is IndexKind.SQLITE:
        raise ConfigError(
            "production mode refuses the embedded SQLite index: set ARCHIVER_INDEX=elasticsearch"
        )
    if not settings.s3_secure and not _is_loopback(settings.s3_endpoint):
        raise ConfigError(
            f"production mode refuses plain-HTTP S3 to non-loopback host {settings.s3_endpoint}: "
            "set ARCHIVER_S3_SECURE=true"
        )
    if settings.state is StateKind.POSTGRES:
        _check_state_dsn(settings.state_dsn.get_secret_value())
    required = {
        "ARCHIVER_APP_SECRETS": settings.app_secrets,
        "ARCHIVER_VERIFY_TOKEN": settings.verify_token,
        "ARCHIVER_PSEUDONYM_KEY": settings.pseudonym_key,
        "ARCHIVER_S3_ACCESS_KEY": settings.s3_access_key,
        "ARCHIVER_S3_SECRET_KEY": settings.s3_secret_key,
    }
    if settings.kek_file is None:
        required["ARCHIVER_KEK"] = settings.kek
    if settings.signing_key_file is None:
        required["ARCHIVER_SIGNING_KEY"] = settings.signing_key
    for name, value in required.items():
        secret = value.get_secret_value()
        parts = (
            [p.strip() for p in secret.split(",")] if name == "ARCHIVER_APP_SECRETS" else [secret]
        )
        if any(p.casefold() in KNOWN_DEFAULT_SECRETS for p in parts):
            raise ConfigError(f"production mode refuses a missing or default {name}")
    if settings.lock_mode != "COMPLIANCE":
        raise ConfigError("production mode requires ARCHIVER_LOCK_MODE=COMPLIANCE")
    if not settings.report_signing_key.get_secret_value().strip() or not (
        settings.report_signing_cert.strip()
    ):
        # A self-signed dev pair proves nothing to a regulator.
        raise ConfigError("production mode requires ARCHIVER_REPORT_SIGNING_KEY and "
                          "ARCHIVER_REPORT_SIGNING_CERT (RSA or P-256, path or PEM)")


def _dev_secret_defaults(data_dir: Path) -> dict[str, str]:
    """Generate (once) and persist the secrets dev mode needs, so restarts keep working."""
    from archiver.ledger.note import Signer  # local: only needed in dev mode

    path = data_dir / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only, from the start
    values = {
        "pseudonym_key": secrets.token_hex(32),
        "kek": base64.b64encode(secrets.token_bytes(32)).decode(),
        "signing_key": Signer.generate("wa-archiver.local/log").key_text,
        "verify_token": secrets.token_urlsafe(24),
        "app_secrets": secrets.token_hex(16),
    }
    # Secrets must never sit on disk readable by others, not even for an instant: the
    # file is created 0600 (O_EXCL, a fresh name) and linked into place only when whole.
    # ``link`` refuses to replace: when two processes race, the first file wins and the
    # other reads it, so both use the same keys.
    tmp = data_dir / f".dev-secrets.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(values, indent=2))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            stored = json.loads(path.read_text())
            return stored
    finally:
        tmp.unlink(missing_ok=True)
    return values


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and file), fill dev secrets, check production."""
    try:
        settings = Settings(**overrides)
    except Exception as exc:  # pydantic.ValidationError and TOML errors alike
        first = str(exc).splitlines()
        raise ConfigError("invalid settings: " + " ".join(first[:3])) from exc
    if settings.mode is Mode.DEV:
        defaults = _dev_secret_defaults(settings.data_dir)
        fill = {
            name: SecretStr(value)
            for name, value in defaults.items()
            if not getattr(settings, name).get_secret_value()
        }
        if fill:
            settings = settings.model_copy(update=fill)
    check_production(settings)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
