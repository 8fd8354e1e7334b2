"""The ``archiver`` command. One module, ``main(argv=None)``; each command builds the
same runtime the service uses, from the same settings."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from archiver.auth import Role

if TYPE_CHECKING:
    from archiver.runtime import Runtime
from archiver.cli_coexistence import app as coexistence_app
from archiver.cli_demo import app as demo_cli
from archiver.cli_index import register as register_index_commands
from archiver.cli_retention import app as retention_cli  # policy, holds, dispose, retention
from archiver.cli_status import app as status_cli
from archiver.errors import ArchiverError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
token_app = typer.Typer(no_args_is_help=True, help="API bearer tokens.")
app.add_typer(token_app, name="token")
log_app = typer.Typer(no_args_is_help=True, help="The proof log: checkpoints and keys.")
app.add_typer(log_app, name="log")
app.add_typer(coexistence_app, name="coexistence")
app.add_typer(retention_cli)  # unnamed: its commands join the top level
app.add_typer(status_cli)  # archiver status
app.add_typer(demo_cli)  # archiver demo
register_index_commands(app)  # archiver reindex, archiver index status


def _runtime() -> Runtime:
    from archiver.logs import configure_logging
    from archiver.runtime import Runtime
    from archiver.settings import get_settings

    settings = get_settings()
    # Logs go to stderr: stdout is the command's output (``verify --json`` findings, keys).
    configure_logging(settings.log_level)
    return Runtime.open(settings)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[
        int, typer.Option(help="Worker processes (one per core is a good start).")
    ] = 1,
) -> None:
    """Run the HTTP service (webhook, API, background workers)."""
    import uvicorn

    from archiver.settings import get_settings

    settings = get_settings()  # fail fast on bad settings, before forking workers
    uvicorn.run(
        "archiver.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # access logs would carry query strings; we log our own events
    )


@app.command()
def init() -> None:
    """Create the buckets (evidence: locked + versioned; state) and the index if missing."""
    runtime = _runtime()
    runtime.index.ensure_index()
    typer.echo(f"ready: {runtime.objects.name} store, {runtime.index.name} index")


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Process what is pending, index it, exit.")] = False,
) -> None:
    """Run processing and indexing without the HTTP service (scale them separately)."""
    import time

    runtime = _runtime()
    if once:
        outcomes = runtime.processor.sweep()
        while runtime.follower.catch_up():
            pass
        typer.echo(f"processed {sum(o.status == 'done' for o in outcomes)} batch(es)")
        return
    runtime.start_workers()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


@app.command()
def relink() -> None:
    """Migration: link the identities Meta named together in records archived before
    identity merging (phone + BSUID, number changes); logs one leaf per merge."""
    from archiver.subjects.relink import relink_archive

    runtime = _runtime()
    merges = relink_archive(objects=runtime.objects, state=runtime.state, keys=runtime.keys,
                            pseudo=runtime.pseudo, log=runtime.log)  # fmt: skip
    typer.echo(f"merged {len(merges)} subject(s)")


@app.command()
def verify(
    sample: Annotated[
        int | None, typer.Option(help="Re-read only N random object versions (quick sweep).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON lines.")] = False,
    grace: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds before the log snapshot in which an object the log does not name "
            "yet (written just before its leaf is appended) is pending, not a finding.",
        ),
    ] = 300.0,
) -> None:
    """Re-verify the whole archive against its proof log. Exit 0 clean (pending objects
    are listed but do not fail the run), 1 on any finding."""
    import json

    runtime = _runtime()
    result = runtime.proofs.verify(sample, runtime.audit, grace=grace)
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
    """Sign a checkpoint now (if the log grew) and print the latest signed note."""
    runtime = _runtime()
    runtime.checkpoints.sign_if_grown()
    typer.echo(runtime.proofs.checkpoint(), nl=False)


@log_app.command("public-key")
def log_public_key() -> None:
    """Print the verifier key to pin (C2SP ``name+keyid+base64``)."""
    typer.echo(_runtime().proofs.public_key())


@log_app.command("keygen")
def log_keygen(name: Annotated[str, typer.Option(help="Key name (the log origin).")]) -> None:
    """Print a new C2SP signer key (keep it secret) to stdout and its verifier to stderr."""
    from archiver.ledger.note import Signer

    signer = Signer.generate(name)
    typer.echo(signer.key_text)
    typer.echo(signer.verifier.key_text, err=True)


@log_app.command("rotate-key")
def log_rotate_key(
    new_key_file: Annotated[str, typer.Option(help="File holding the new signer key.")],
) -> None:
    """Announce a new signing key in the log under the current one; then set
    ARCHIVER_SIGNING_KEY to the new key on every replica."""
    from pathlib import Path

    from archiver.ledger.note import Signer

    runtime = _runtime()
    new = Signer.from_key_text(Path(new_key_file).read_text().strip())
    signed = runtime.checkpoints.rotate(new)
    typer.echo(f"announced {new.verifier.key_text} in tree size {signed.checkpoint.size}")


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="Role of the token.")],
    name: Annotated[str, typer.Option(help="Who or what holds it.")],
    number: Annotated[
        list[str] | None, typer.Option(
            help="Limit to this business number, given as its phone_number_id (the "
            "stable id in the webhook's metadata, not the display number); repeatable."
        )
    ] = None,
    expires: Annotated[float | None, typer.Option(help="Days until it expires.")] = None,
    person: Annotated[
        str | None,
        typer.Option(help="The person the token belongs to (a stable id, e.g. an employee "
                     "id); needed to approve dispositions, which count distinct persons."),
    ] = None,
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    runtime = _runtime()
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
def token_revoke(token_id: str) -> None:
    """Revoke a token by its id (the part after ``wa_``)."""
    record = _runtime().tokens.revoke(token_id)
    typer.echo(f"revoked {record.token_id} ({record.name})")


@token_app.command("list")
def token_list() -> None:
    """List tokens (never their secrets)."""
    for record in _runtime().tokens.list():
        state = "revoked" if record.revoked_at else "active"
        typer.echo(
            f"{record.token_id}\t{record.role}\t{record.name}\t{state}\t"
            f"expires={record.expires_at or 'never'}\tnumbers={record.numbers or 'all'}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        # With standalone_mode off, click returns an Exit's code instead of raising it.
        result = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ArchiverError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        return 2
    except SystemExit as exc:  # typer's own exits (--help, bad usage)
        return int(exc.code or 0)
    except Exception as exc:  # click's usage errors arrive here with standalone_mode off
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
