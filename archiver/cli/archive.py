"""How every ``archiver`` command finds and opens the archive: one rule, one function.

The archive is ``ARCHIVER_DATA_DIR``, else the config file's ``data_dir``, else
``./archive-data`` (the settings' own precedence). ``serve`` and ``init`` may create it;
every other command refuses to open an archive that is not there, rather than quietly
start a fresh one with new dev secrets (whose tokens the running service would refuse).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from archiver.errors import ArchiverError, ConfigError

if TYPE_CHECKING:
    from archiver.runtime import Runtime
    from archiver.settings import Settings


class ArchiveNotFound(ArchiverError):
    code = "archive_not_found"


def archive_location(settings: Settings) -> str:
    """The archive as one line: its data folder, and its buckets on S3."""
    folder = str(Path(settings.data_dir).resolve())
    if settings.store.value == "local":
        return folder
    return (f"s3://{settings.s3_endpoint}/{settings.evidence_bucket} "
            f"(state {settings.state_bucket}; data folder {folder})")  # fmt: skip


def archive_exists(settings: Settings) -> bool:
    """Whether an archive is where the settings point: the evidence folder on the local
    store, the evidence bucket on S3."""
    if settings.store.value == "local":
        return (Path(settings.data_dir) / "evidence").is_dir()
    from archiver.store._s3common import make_client

    client = make_client(
        settings.s3_endpoint,
        settings.s3_access_key.get_secret_value(),
        settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )
    return bool(client.bucket_exists(settings.evidence_bucket))


def raw_settings() -> Settings:
    """The settings without the dev-secret fill, which would create the data folder."""
    from archiver.settings import Settings

    try:
        return Settings()
    except Exception as exc:  # pydantic.ValidationError and TOML errors alike
        first = str(exc).splitlines()
        raise ConfigError("invalid settings: " + " ".join(first[:3])) from exc


def check_archive(*, create: bool, announce: bool = True) -> Settings:
    """Resolve the settings, say which archive on stderr, refuse a missing one."""
    from archiver.settings import get_settings

    raw = raw_settings()
    if not create and not archive_exists(raw):
        raise ArchiveNotFound(
            f"no archive in {archive_location(raw)}: run this where archiver serve "
            "runs, or set ARCHIVER_DATA_DIR (or data_dir in ARCHIVER_CONFIG_FILE) to its "
            "data folder; archiver init creates a new one"
        )
    settings = get_settings()
    if announce:
        typer.echo(f"archive: {archive_location(settings)}", err=True)
    return settings


def open_runtime(*, create: bool = False) -> Runtime:
    """The runtime every command uses (the service's own, from the same settings).
    ``create``: make the archive if missing (``init`` only); otherwise a missing archive
    is an error."""
    from archiver.logs import configure_logging
    from archiver.runtime import Runtime

    settings = check_archive(create=create)
    # Logs go to stderr: stdout is the command's output (``verify --json`` findings, keys).
    configure_logging(settings.log_level)
    return Runtime.open(settings, create=create)


def start_facts(settings: Settings, *, host: str, port: int, prog: str) -> dict[str, str]:
    """What the start-up banner says: where the data is, where to point Meta, where the
    dev secrets are, what to run next. Never a secret itself."""
    folder = Path(settings.data_dir).resolve()
    shown_host = f"[{host}]" if ":" in host else host
    base = f"http://{shown_host}:{port}"
    if settings.store.value == "local":
        store = f"local folder {folder / 'evidence'} (not WORM-grade)"
    else:
        scheme = "https" if settings.s3_secure else "http"
        store = (f"s3 {scheme}://{settings.s3_endpoint} buckets {settings.evidence_bucket} "
                 f"(locked), {settings.state_bucket}")  # fmt: skip
    if settings.index.value == "sqlite":
        index = f"sqlite {folder / 'index.sqlite3'}"
    else:
        index = f"elasticsearch {settings.es_url} alias {settings.es_alias}"
    dev = settings.mode.value == "dev"
    secrets_file = folder / "dev-secrets.json"
    facts = {
        "mode": settings.mode.value + (" (try-out defaults; not for production)" if dev else ""),
        "data_dir": str(folder),
        "store": store,
        "index": index,
        "listen": base,
        "webhook_url": (f"{base}/webhooks/whatsapp "
                        "(Meta needs https://<your host>/webhooks/whatsapp)"),
        "api_docs": f"{base}/docs",
        "dev_file": (f"{secrets_file} (generated for every secret not set in the "
                        "environment)") if dev else "none (production)",
        "verify_hint": (f'"verify_token" in {secrets_file}, unless ARCHIVER_VERIFY_TOKEN is set'
                         if dev else "ARCHIVER_VERIFY_TOKEN (as set)"),
        "next": (f'{prog} token create --role compliance_officer --name "you"  '
                 "(in another terminal, same folder or ARCHIVER_DATA_DIR)"),
    }
    return facts


# The banner's labels; the log line's keys avoid the words the redactor blanks ("token").
_LABELS = {
    "mode": "mode", "data_dir": "data folder", "store": "store", "index": "index",
    "listen": "listening on", "webhook_url": "webhook URL", "api_docs": "API docs",
    "dev_file": "dev secrets", "verify_hint": "verify token", "next": "next",
}  # fmt: skip


def announce_start(settings: Settings, *, host: str, port: int, prog: str) -> None:
    """The start-up banner: a readable block on a terminal, one structured log line
    (the same facts) otherwise, so that log collectors get JSON only."""
    import sys

    from archiver import __version__
    from archiver.logs import get_logger

    facts = start_facts(settings, host=host, port=port, prog=prog)
    if sys.stderr.isatty():
        width = max(len(label) for label in _LABELS.values()) + 1
        lines = [f"wa-archiver {__version__}"]
        lines += [f"  {(_LABELS[k] + ':').ljust(width)} {v}" for k, v in facts.items()]
        typer.echo("\n".join(lines), err=True)
    else:
        get_logger("archiver.start").info("starting", version=__version__, **facts)
