"""``archiver coexistence …``: the one-shot onboarding syncs and the number's health."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from archiver.coexistence import Coexistence
    from archiver.runtime import Runtime

app = typer.Typer(no_args_is_help=True, help="Coexistence onboarding (smb_app_data) and health.")

_ID = Annotated[
    str, typer.Option("--phone-number-id", help="The business number's phone_number_id.")
]


def _service() -> tuple[Runtime, Coexistence]:
    from archiver.cli.archive import open_runtime

    runtime = open_runtime()
    return runtime, runtime.coexistence()


@app.command("sync")
def sync(phone_number_id: _ID) -> None:
    """Ask Meta for a new number's contacts and chat history.

    Requests contacts (smb_app_state_sync), then history, each once: Meta allows one
    call within 24 h of onboarding. Prints Meta's request ids.
    """
    from archiver.audit import Actor

    runtime, service = _service()
    try:
        result = service.sync(phone_number_id, Actor(token_id=None, name="cli", role="admin"))
    finally:
        runtime.audit.flush()
    typer.echo(json.dumps(result, indent=2, sort_keys=True))
    if any(doc.get("status") == "failed" for doc in result.values()):
        raise typer.Exit(1)


@app.command("status")
def status(
    phone_number_id: _ID,
    orphan_hours: Annotated[
        float, typer.Option(help="Report parked statuses older than this many hours.")
    ] = 24.0,
) -> None:
    """Show a number's onboarding sync and health, as JSON.

    Sync requests, history progress, orphan statuses and silence.
    """
    runtime, service = _service()
    try:
        report = service.report(phone_number_id, orphan_hours=orphan_hours)
    finally:
        runtime.audit.flush()
    typer.echo(json.dumps(report, indent=2, sort_keys=True))
