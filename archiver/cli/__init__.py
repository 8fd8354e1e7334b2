"""Run and administer a WhatsApp Business compliance archive.

Every command opens the same archive: ARCHIVER_DATA_DIR, else data_dir in the file named
by ARCHIVER_CONFIG_FILE, else ./archive-data. Each prints it on stderr. Only serve and
init create an archive; the others refuse a folder that holds none.
\f
Developers: this package, ``main(argv=None)`` here and one module per command group;
every command opens the runtime through ``archiver.cli.archive.open_runtime`` (the
service's own, from the same settings, with logging on stderr).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from archiver.auth import Role
from archiver.cli.archive import open_runtime
from archiver.cli.coexistence import app as coexistence_app
from archiver.cli.demo import app as demo_cli
from archiver.cli.export import app as export_cli
from archiver.cli.index import register as register_index_commands
from archiver.cli.reports import register as register_report_commands
from archiver.cli.retention import app as retention_cli  # policy, holds, dispose, retention
from archiver.cli.status import app as status_cli
from archiver.errors import ArchiverError

# Plain help (no type column such as "--help <bool>"); sub-apps inherit the mode.
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)  # fmt: skip
token_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API tokens.")
app.add_typer(token_app, name="token")
log_app = typer.Typer(no_args_is_help=True, help="The proof log: checkpoints and signing keys.")
app.add_typer(log_app, name="log")
app.add_typer(coexistence_app, name="coexistence")
app.add_typer(retention_cli)  # unnamed: its commands join the top level
app.add_typer(status_cli)  # archiver status
app.add_typer(demo_cli)  # archiver demo
app.add_typer(export_cli)  # archiver verify-export (offline; opens no archive)
register_index_commands(app)  # archiver reindex, archiver index status
register_report_commands(app)  # archiver report, archiver verify-report (offline)

_debug = False  # set by --debug: errors show their traceback


def _version(value: bool) -> None:
    if value:
        from archiver import __version__

        typer.echo(f"wa-archiver {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:  # fmt: skip
    global _debug
    _debug = debug



@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="ARCHIVER_HOST", metavar="ADDRESS", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="ARCHIVER_PORT", metavar="PORT", help="TCP port to listen on.")
    ] = 8080,
    workers: Annotated[
        int, typer.Option(metavar="N", help="Worker processes (one per core is a good start).")
    ] = 1,
    trusted_proxies: Annotated[
        str,
        typer.Option(
            envvar="ARCHIVER_TRUSTED_PROXIES",
            metavar="ADDRESSES",
            help="Comma-separated addresses of reverse proxies whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed. Empty (default): believe no one.",
        ),
    ] = "",
) -> None:
    """Run the service: webhook, API and background workers.

    Creates the archive on first start. Prints where the data lives, the webhook URL and
    the next command to run.
    """
    import uvicorn

    from archiver.cli.archive import announce_start, check_archive
    from archiver.logs import configure_logging

    # Fail fast on bad settings, before forking; the banner names the archive.
    settings = check_archive(create=True, announce=False)
    configure_logging(settings.log_level)
    announce_start(settings, host=host, port=port, prog=_prog())
    if workers > 1:  # each worker process counts its own: /metrics adds them up
        from archiver.metrics import MULTIPROC_ENV, prepare_multiprocess

        folder = os.environ.get(MULTIPROC_ENV) or str(settings.data_dir / "prometheus")
        prepare_multiprocess(Path(folder))
    uvicorn.run(
        "archiver.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through our structlog handler
        access_log=False,  # access logs would carry query strings; we log our own events
        **proxy_options(trusted_proxies),
    )


def proxy_options(trusted_proxies: str) -> dict[str, Any]:
    """uvicorn's proxy settings: forwarded headers count only from the named proxies.

    uvicorn believes X-Forwarded-For from 127.0.0.1 by default, so anyone on the host could
    pose as any address in the refusal aggregates and audit events. We believe no one unless
    the operator names the proxy in front.
    """
    addresses = [a.strip() for a in trusted_proxies.split(",") if a.strip()]
    if not addresses:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(addresses)}


def _prog() -> str:
    """How the user ran us (".venv/bin/archiver"), so the next command we suggest runs."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if argv0.endswith("/archiver") else "archiver"


@app.command()
def init() -> None:
    """Create the archive if it is missing.

    Creates the buckets (evidence: locked and versioned; state) and the index.
    """
    runtime = open_runtime(create=True)
    runtime.index.ensure_index()
    typer.echo(f"ready: {runtime.objects.name} store, {runtime.index.name} index")


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Process what is pending, index it, then exit.")
    ] = False,
) -> None:
    """Run processing and indexing without the HTTP service.

    For scaling them apart from the web process (set ARCHIVER_INLINE_WORKERS=false there).
    """
    import time

    runtime = open_runtime()
    if once:
        outcomes = runtime.processor.sweep()
        while runtime.follower.catch_up():
            pass
        typer.echo(f"processed {sum(o.status == 'done' for o in outcomes)} batch(es)")
        return
    runtime.start_workers(capturing=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@app.command()
def relink() -> None:
    """Link identities in older records (one-time migration).

    For records archived before identity merging (phone number and BSUID, number
    changes). Each merge is logged in the proof log.
    """
    from archiver.retention.relink import relink_archive

    runtime = open_runtime()
    merges = relink_archive(objects=runtime.objects, state=runtime.state, keys=runtime.keys,
                            pseudo=runtime.pseudo, log=runtime.log)  # fmt: skip
    typer.echo(f"merged {len(merges)} subject(s)")


@app.command()
def verify(
    sample: Annotated[
        int | None,
        typer.Option(metavar="N", help="Re-read only N random object versions (quick sweep)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print findings as JSON lines.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help="Seconds before the log snapshot in which an object the log does not name "
            "yet (written just before its leaf is appended) is pending, not a finding.",
        ),
    ] = 300.0,
) -> None:
    """Check every stored object against the proof log.

    Exits 0 when clean and 1 on any finding. Objects written in the last moments
    before the check (see --grace) are listed as pending and do not fail the run.
    """
    import json

    from archiver.cli.progress import progress_reporter

    runtime = open_runtime()
    with progress_reporter("verifying", "object versions") as progress:
        result = runtime.proofs.verify(sample, runtime.audit, grace=grace, progress=progress)
    for finding in [*result.findings, *result.pending]:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "kind": finding.kind.value,
                        "key": finding.key,
                        "version_id": finding.version_id,
                        "expected": finding.expected,
                        "found": finding.found,
                        "message": finding.message,
                    }
                )
            )
        else:
            typer.echo(
                f"{finding.kind.value}\t{finding.key}\t{finding.version_id}\t"
                f"expected={finding.expected}\tfound={finding.found}\t{finding.message}"
            )
    checked = "all objects" if sample is None else f"{sample} sampled objects"
    typer.echo(
        f"verified tree size {result.tree_size} ({checked}): "
        f"{len(result.findings)} finding(s), {len(result.pending)} pending",
        err=True,
    )
    if result.findings:
        raise typer.Exit(1)


@log_app.command("checkpoint")
def log_checkpoint() -> None:
    """Sign a checkpoint now and print the latest one.

    A new checkpoint is signed only if the log grew since the last.
    """
    runtime = open_runtime()
    runtime.checkpoints.sign_if_grown()
    typer.echo(runtime.proofs.checkpoint(), nl=False)


@log_app.command("public-key")
def log_public_key() -> None:
    """Print the log's public key, for auditors to pin.

    Its form is name+keyid+base64 (a C2SP signed-note verifier key).
    """
    typer.echo(open_runtime().proofs.public_key())


@log_app.command("keygen")
def log_keygen(
    name: Annotated[str, typer.Option(help="Key name: the log origin, e.g. example.com/log.")],
) -> None:
    """Make a new signing key; needs no archive.

    Prints the secret key to stdout (keep it secret) and its public key to stderr.
    """
    from archiver.ledger.note import Signer

    signer = Signer.generate(name)
    typer.echo(signer.key_text)
    typer.echo(signer.verifier.key_text, err=True)


@log_app.command("rotate-key")
def log_rotate_key(
    new_key_file: Annotated[
        str, typer.Option(help="File holding the new secret key (from log keygen).")
    ],
) -> None:
    """Switch to a new signing key, announced in the log.

    The announcement is signed by the current key.

    Afterwards set ARCHIVER_SIGNING_KEY to the new key on every replica.
    """
    from pathlib import Path

    from archiver.ledger.note import Signer

    runtime = open_runtime()
    new = Signer.from_key_text(Path(new_key_file).read_text().strip())
    signed = runtime.checkpoints.rotate(new)
    typer.echo(f"announced {new.verifier.key_text} in tree size {signed.checkpoint.size}")


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="What the token may do.")],
    name: Annotated[
        str, typer.Option(metavar="TEXT", help='Who or what holds it, e.g. "Ana (compliance)".')
    ],
    number: Annotated[
        list[str] | None, typer.Option(
            metavar="PHONE_NUMBER_ID",
            help="Limit to this business number, given as its phone_number_id (the "
            "stable id in the webhook's metadata, not the display number); repeatable."
        )
    ] = None,
    expires: Annotated[
        float | None, typer.Option(metavar="DAYS", help="Days until it expires.")
    ] = None,
    person: Annotated[
        str | None,
        typer.Option(metavar="ID",
                     help="The person the token belongs to (a stable id, e.g. an employee "
                     "id); needed to approve dispositions, which count distinct persons."),
    ] = None,
) -> None:
    """Create an API token.

    The token is printed once, on stdout; only its hash is stored. Its id, for token
    revoke, is printed on stderr.
    """
    runtime = open_runtime()
    token, record = runtime.tokens.create(
        role=role, name=name, numbers=number, expires_in_days=expires, person=person
    )
    typer.echo(token)
    typer.echo(
        f"id={record.token_id} role={record.role} person={record.person or '-'} "
        f"numbers={record.numbers or 'all'} "
        f"expires={record.expires_at or 'never'}",
        err=True,
    )


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="The token's id, as token create (id=...) and token list show it; the "
            "whole token works too.",
        ),
    ],
) -> None:
    """Revoke a token: it is refused from now on."""
    if token_id.startswith("wa_"):  # the whole token wa_<id>_<secret>: take its id
        token_id = token_id.split("_")[1]
    record = open_runtime().tokens.revoke(token_id)
    typer.echo(f"revoked {record.token_id} ({record.name})")


@token_app.command("list")
def token_list() -> None:
    """List tokens, never their secrets.

    One line each: id, role, name, state, expiry, numbers.
    """
    for record in open_runtime().tokens.list():
        state = "revoked" if record.revoked_at else "active"
        typer.echo(
            f"{record.token_id}\t{record.role}\t{record.name}\t{state}\t"
            f"expires={record.expires_at or 'never'}\tnumbers={record.numbers or 'all'}"
        )


def _click_classes(name: str) -> tuple[type[Any], ...]:
    """click's exception class ``name``, and typer's vendored copy of it (typer >= 0.20
    raises its own ``typer._click`` classes, which are not click's)."""
    import click

    classes: list[type[Any]] = [getattr(click.exceptions, name)]
    vendored = sys.modules.get("typer._click.exceptions")
    if vendored is not None and hasattr(vendored, name):
        classes.append(getattr(vendored, name))
    return tuple(classes)


def main(argv: Sequence[str] | None = None) -> int:
    global _debug
    _debug = False
    try:
        # With standalone_mode off, click returns an Exit's code instead of raising it.
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ArchiverError as exc:
        if _debug:
            raise
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        return 2
    except SystemExit as exc:  # typer's own exits (--help, bad usage)
        return int(exc.code or 0)
    except Exception as exc:  # click's usage errors arrive here with standalone_mode off
        if isinstance(exc, _click_classes("ClickException")):
            exc.show()  # a usage error: the message and exit 2, as click promises
            return int(exc.exit_code)
        if isinstance(exc, _click_classes("Abort")):
            return 1
        if _debug:
            raise
        # One clear line, not a traceback: the user's problem is the message.
        detail = " ".join(str(exc).split()) or type(exc).__name__
        typer.echo(f"error: {type(exc).__name__}: {detail} (--debug shows the traceback)",
                   err=True)  # fmt: skip
        return 1
    return result if isinstance(result, int) else 0

