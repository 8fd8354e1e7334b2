"""``archiver verify-export FILE.zip --public-key KEY``: check an export package offline.

Opens no archive, reads no settings and creates no folder: an outside expert runs it on
a package and the log's public key, nothing else. Exit 0 when every check holds, 1 when
one fails (each named) or the key is not pinned, 2 for a file that cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer()


def _read_key(value: str) -> str:
    """The key text itself, or a file holding it (the form ``archiver log`` prints)."""
    path = Path(value)
    if path.is_file():
        return path.read_text().strip()
    return value.strip()


@app.command("verify-export")
def verify_export(
    package: Annotated[Path, typer.Argument(metavar="FILE.zip", help="The export package.")],
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", metavar="KEY",
                     help="The log's verifier key (C2SP vkey text, or a file holding it)."),
    ] = None,
    trust_package_key: Annotated[
        bool,
        typer.Option("--trust-package-key",
                     help="Use the key inside the package: proves internal consistency only."),
    ] = False,
) -> None:  # fmt: skip
    """Check an export package offline against a pinned key.

    Checks file hashes, records against their log entries and leaves, inclusion proofs,
    the checkpoint's signature under the pinned key, the export's own leaf and the
    consistency of the later checkpoint. Opens no archive and creates no folder. Exit 0
    when all hold, 1 naming what failed.
    """
    from archiver.export.verify import KeyNotPinned, verify_package

    if not package.is_file():
        typer.echo(f"error: {package}: no such file", err=True)
        raise typer.Exit(2)
    try:
        result = verify_package(
            package,
            _read_key(public_key) if public_key is not None else None,
            trust_package_key=trust_package_key,
        )
    except KeyNotPinned as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    if result.trusted_package_key:
        typer.secho("!" * 78, err=True, fg="red")
        typer.secho(f"WARNING: {result.warnings[0]}", err=True, fg="red", bold=True)
        typer.secho("!" * 78, err=True, fg="red")
    typer.echo(result.summary())
    raise typer.Exit(0 if result.ok else 1)


@app.command("export")
def export(
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE.zip",
                                         help="Where to write the package.")],
    case: Annotated[str | None, typer.Option("--case", metavar="ID",
                                             help="Export this case's scope.")] = None,
    subject: Annotated[str | None, typer.Option(
        "--subject", metavar="WA_ID_OR_BSUID",
        help="Subject access (GDPR Art. 15): every record of one contact, across numbers, "
             "as a readable PDF and JSON in the package.")] = None,
    bates_prefix: Annotated[str, typer.Option(help="Bates prefix ([A-Za-z0-9_-], ≤ 20).")] = "",
    bates_start: Annotated[int, typer.Option(help="First Bates number of a new case.")] = 1,
    media: Annotated[bool, typer.Option(help="Include attachments' original bytes.")] = True,
    raw: Annotated[bool, typer.Option(help="Include native raw capture batches.")] = False,
    transcripts: Annotated[bool, typer.Option(help="Render PDF transcripts.")] = True,
    time_zone: Annotated[str, typer.Option(help="IANA time zone for days and times.")] = "UTC",
) -> None:  # fmt: skip
    """Export a case or a data subject as a package.

    Runs the same export job as POST /v1/cases/{id}/exports, here, with a progress bar;
    it is logged, audited and in the case's chain of custody. Prints a JSON summary;
    check the file with "archiver verify-export".
    """
    import getpass
    import json

    from archiver.audit import Actor
    from archiver.cli.archive import open_runtime
    from archiver.cli.progress import progress_reporter
    from archiver.errors import ArchiverError
    from archiver.export.job import (
        ARTIFACT,
        KIND,
        ExportOptions,
        case_params,
        subject_label,
        subject_params,
    )
    from archiver.jobs.model import JobOwner, JobState

    if (case is None) == (subject is None):
        typer.echo("error: give exactly one of --case and --subject", err=True)
        raise typer.Exit(2)
    runtime = open_runtime()
    service = runtime.export_jobs()
    actor = Actor(token_id=None, name=f"cli:{getpass.getuser()}", role="admin")
    try:
        options = ExportOptions(bates_prefix=bates_prefix, bates_start=bates_start,
                                include_media=media, include_raw=raw,
                                transcripts=transcripts, time_zone=time_zone)  # fmt: skip
        if case is not None:
            params = case_params(case, actor, options)
            numbers = runtime_case_numbers(runtime, case, actor)
        else:
            assert subject is not None
            params = subject_params(subject.strip(), subject_label(runtime.pseudo, subject),
                                    actor, options)  # fmt: skip
            numbers = None
        job = service.submit(KIND, params, JobOwner("cli", "admin", None), numbers=numbers)
        service.start()
        with progress_reporter("export", "records") as progress:
            job = service.wait(KIND, job.id, on_change=lambda j: progress(
                j.progress.done, j.progress.total))  # fmt: skip
        if job.state is not JobState.SUCCEEDED:
            errors = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in job.errors)
            typer.echo(f"error: export {job.id} {job.state}: {errors}", err=True)
            raise typer.Exit(1)
        ref, chunks = service.open_artifact(job, ARTIFACT)
        tmp = output.with_name(f".{output.name}.part")
        with tmp.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
        tmp.replace(output)
        typer.echo(json.dumps({"export_id": job.id, "file": str(output), "sha256": ref.sha256,
                               "size": ref.size, "counts": dict(job.progress.counts)},
                              indent=1))  # fmt: skip
    except ArchiverError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        service.stop()
        runtime.close()


def runtime_case_numbers(runtime: Any, case_id: str, actor: Any) -> list[str] | None:
    """The case's numbers (the job's visibility), checking the case exists first."""
    numbers = runtime.cases.get(case_id, actor).get("numbers")
    return None if numbers is None else list(numbers)
