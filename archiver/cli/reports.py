"""The report commands, registered on the CLI's Typer app by ``register(app)``:

* ``archiver report --regulation gdpr|hipaa|finra --from DATE --to DATE [--number N …]
  [--sample N] -o FILE.pdf`` runs one report job in this process (progress bar on a
  terminal) and writes the signed PDF;
* ``archiver verify-report FILE.pdf [--public-key KEY] [--cert CERT]`` checks a report
  offline: no settings are read and no data folder is made. Exit 0 when it verifies,
  1 with the failed checks named.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from reports.facts import Regulation


def verify_report_command(
    pdf: Annotated[Path, typer.Argument(help="the signed report (PDF)")],
    public_key: Annotated[str | None, typer.Option(
        "--public-key", help="the log's verifier key (text or file): checks the checkpoint")
    ] = None,
    cert: Annotated[Path | None, typer.Option(
        "--cert", help="the archive's report-signing certificate (PEM): pins the signer; "
        "required, a report signed by any other key fails")
    ] = None,
) -> None:
    """Verify a signed audit report offline.

    Checks the signature and its whole-document coverage, the signer against --cert, the
    twin and the hash printed on its pages, and the log checkpoint it names. Exit 0 or 1."""
    import logging

    from archiver.reporting.offline import verify_file  # local: a fast --help

    # pyHanko logs each judgement it makes with a traceback (a self-signed signer, a
    # suspicious revision); the checks below say what failed, in words.
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False

    try:
        data = pdf.read_bytes()
        cert_pem = cert.read_bytes() if cert is not None else None
    except OSError as exc:
        typer.echo(f"FAILED: cannot read {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    result = verify_file(data, public_key=public_key, cert_pem=cert_pem)
    for check in result.checks:
        typer.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    typer.echo(result.summary)
    raise typer.Exit(0 if result.ok else 1)


def report_command(
    regulation: Annotated[Regulation, typer.Option("--regulation", help="gdpr, hipaa or finra")],
    start: Annotated[str, typer.Option("--from", help="first day (YYYY-MM-DD, UTC)")],
    end: Annotated[str, typer.Option("--to", help="day after the last (exclusive)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the PDF")],
    number: Annotated[list[str] | None, typer.Option(
        "--number", help="business phone_number_id (repeat); default every number")] = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", help="read the lock of a seeded random sample of this many objects "
        "(default: every object of the period)")] = None,
) -> None:
    """Run a signed audit report and write its PDF.

    The report is also kept under lock in the evidence store and logged."""
    from archiver.cli.archive import open_runtime
    from archiver.cli.progress import progress_reporter
    from archiver.errors import ArchiverError
    from archiver.jobs.durable import JobOwner
    from archiver.reporting.gather import ReportRequest
    from archiver.reporting.service import KIND

    numbers = sorted(set(number or []))
    params = {"regulation": regulation.value, "start": start, "end": end,
              "numbers": numbers, "sample_size": sample}
    try:
        ReportRequest.from_json(params)
    except ArchiverError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None
    runtime = open_runtime()
    jobs, service = runtime.job_service, runtime.reports
    try:
        job = jobs.submit(KIND, params, JobOwner("cli", "admin", None),
                          numbers=numbers or None)
        jobs.start()
        with progress_reporter(f"{regulation.value} report", "%") as progress:
            done = jobs.wait(KIND, job.id, on_change=lambda j: progress(j.progress.done, 100))
        if done.state.value != "succeeded":
            codes = ", ".join(f"{e.get('code')}: {e.get('message')}" for e in done.errors)
            typer.echo(f"error: the report {done.state}: {codes}", err=True)
            raise typer.Exit(1)
        output.write_bytes(service.read_part(dict(done.result), "pdf"))
        r = done.result
        typer.echo(f"{output}: {r['regulation']} {r['period_start']}..{r['period_end']}, "
                   f"checkpoint {r['tree_size']}, twin sha256 {r['twin_sha256']}")
    finally:
        jobs.stop()
        runtime.close()  # the CLI runs the job itself: no worker needs to be up


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)
    app.command("verify-report")(verify_report_command)


if __name__ == "__main__":  # python -m archiver.cli.reports verify-report FILE
    cli = typer.Typer(add_completion=False)
    register(cli)
    cli(sys.argv[1:])
