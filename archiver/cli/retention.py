"""``archiver`` commands for retention (registered in ``archiver.cli`` with one
``app.add_typer``; this sub-app has no name, so its commands merge into the top level):

    archiver policy explain RECORD_ID     which policy applies to a record, and why
    archiver holds list                   legal holds and what they hold
    archiver holds refresh [HOLD_ID]      re-run open holds' scopes (query holds' later arrivals)
    archiver holds backfill-conversations trace old records so conversation holds skip the scan
    archiver dispose [--dry-run]          delete expired, unheld versions (under the lease)
    archiver retention apply [--dry-run]  lengthen locks where the current policies say longer
    archiver erasure resume               finish erasures a crash interrupted
    archiver erasure replay               after restoring working state from a backup: destroy
                                          again every key the log's key_shredded leaves name
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from archiver.cli.archive import open_runtime
from archiver.cli.progress import progress_reporter

if TYPE_CHECKING:
    pass

app = typer.Typer(add_completion=False)
policy_app = typer.Typer(no_args_is_help=True, help="Retention policies.")
holds_app = typer.Typer(no_args_is_help=True, help="Legal holds.")
retention_app = typer.Typer(no_args_is_help=True, help="Retention locks.")
erasure_app = typer.Typer(no_args_is_help=True, help="GDPR erasure (crypto-shredding).")
app.add_typer(policy_app, name="policy")
app.add_typer(holds_app, name="holds")
app.add_typer(retention_app, name="retention")
app.add_typer(erasure_app, name="erasure")

DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]



def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@policy_app.command("explain")
def policy_explain(
    record_id: Annotated[str, typer.Argument(metavar="RECORD_ID", help="The record's id.")],
) -> None:
    """Explain a record's retention and lock.

    Re-runs the policy engine on the record's facts (from its header) and shows the lock
    it was written with and the store's lock now.
    """
    from archiver.retention.common import facts_of, record_by_id
    from policies.engine import explain

    runtime = open_runtime()
    record = record_by_id(runtime.objects, record_id)
    written = record.header.get("policy") or {}
    decision = runtime.policy.decision(facts_of(record.header))
    typer.echo(f"record:          {record_id}")
    typer.echo(f"written with:    {written.get('id')} until {written.get('retain_until')} "
               f"({written.get('lock_mode')})")
    info = runtime.objects.stat(record.key, record.version_id)
    if info.retention is not None:
        typer.echo(f"store lock:      {info.retention.mode.value} until "
                   f"{info.retention.retain_until.isoformat()}"
                   + (" + legal hold" if info.legal_hold else ""))
    typer.echo(explain(decision))


@holds_app.command("list")
def holds_list() -> None:
    """List every hold, open and released.

    With its status, case, how many versions it holds and who created it.
    """
    from archiver.retention.holds import summary

    for hold in open_runtime().retention.holds.list():
        s = summary(hold)
        typer.echo(f"{s['id']}\t{s['status']}\tcase={s.get('case_id') or '-'}\t"
                   f"versions={s['held_versions']}\tsubjects={len(s.get('subjects', []))}\t"
                   f"created={s.get('created_at')} by {s.get('created_by')}")


@holds_app.command("refresh")
def holds_refresh(
    hold_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[HOLD_ID]", help="The hold to refresh; every open one if left out."
        ),
    ] = None,
) -> None:
    """Re-run open holds' scopes.

    Whatever a hold's scope finds now (new records, merged identities) is held too.
    """

    service = open_runtime().retention.holds
    ids = [hold_id] if hold_id else [h["id"] for h in service.registry.open_holds()]
    for hid in ids:
        typer.echo(f"{hid}\tnewly held={service.refresh(hid)}")


@holds_app.command("backfill-conversations")
def holds_backfill_conversations() -> None:
    """Trace conversations (one-time migration).

    Scans every stored record once and marks the traces complete, so conversation holds
    stop reading every record header. Run it once on an archive that has records from
    before the traces, after every process is upgraded.
    """
    from archiver.retention.conversation_lookup import backfill

    runtime = open_runtime()
    with progress_reporter("tracing", "records") as progress:
        report = backfill(runtime.objects, runtime.state, progress)
    _echo_json(report.to_json())


@app.command("dispose")
def dispose(dry_run: DryRun = False) -> None:
    """Delete what retention no longer requires.

    Deletes every expired version that no hold keeps: records, then raw batches, then
    media, with a tombstone each. Runs on one replica at a time (exit 3 if another
    holds the lease).
    """

    runtime = open_runtime()
    with progress_reporter("disposing", "candidates") as progress:
        report = runtime.retention.disposition.run(dry_run=dry_run, progress=progress)
    if not report.ran:
        typer.echo("another replica holds the disposition lease; nothing done", err=True)
        raise typer.Exit(3)
    if report.waiting_for_holds:
        typer.echo("holds still being applied (" + ", ".join(report.waiting_for_holds)
                   + "): nothing deleted; the next run goes on", err=True)  # fmt: skip
    _echo_json(report.to_json())


@retention_app.command("apply")
def retention_apply(dry_run: DryRun = False) -> None:
    """Re-decide every record with the current policies.

    Extends the locks that grew (locks never shrink).
    """

    runtime = open_runtime()
    with progress_reporter("re-deciding", "records") as progress:
        report = runtime.retention.applier.run(dry_run=dry_run, progress=progress)
    _echo_json(report.to_json())


@erasure_app.command("resume")
def erasure_resume() -> None:
    """Finish every erasure procedure a crash left unfinished."""

    rt = open_runtime()
    try:
        _echo_json(rt.retention.erasure.resume_pending())
    finally:
        rt.close()


@erasure_app.command("replay")
def erasure_replay() -> None:
    """Destroy erased keys again after a restore from backup.

    Destroys again every data key and raw slot that the log's key_shredded leaves name
    (docs/keys.md, "Key custody").
    """
    from archiver.retention.residue import replay_shredded

    rt = open_runtime()
    try:
        _echo_json(replay_shredded(rt.log, rt.objects, rt.state, rt.keys, rt.index))
    finally:
        rt.close()
