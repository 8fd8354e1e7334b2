"""``archiver demo``: sign and send a sample Coexistence conversation to the running service
through its real webhook, then say what to search for and how.

The sample (``archiver/demo_data/conversation.json``, shipped in the package) is built from
Meta's published webhook examples: a history-sync chunk, customer messages, a Business App
echo, an image, an edit, a reaction, a revoke and a consent opt-out (STOP keyword and
``user_preferences``). Every run gets fresh message ids and timestamps, so each run is a new
conversation, never a duplicate the archive would fold away. Deliveries are signed with the
archive's own app secret (``ARCHIVER_APP_SECRETS``, or the dev secrets of the data folder),
exactly as Meta signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import httpx

app = typer.Typer()

WEBHOOK_PATH = "/webhooks/whatsapp"
_PLACEHOLDER = re.compile(r"^\{\{(wamid|ts|epoch):([-\w]+)\}\}$")


def load_sample() -> dict[str, Any]:
    text = resources.files("archiver").joinpath("demo_data/conversation.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def render(body: Any, now: int, run: str) -> Any:
    """The step's body with fresh ids and times (pure)."""
    if isinstance(body, dict):
        return {k: render(v, now, run) for k, v in body.items()}
    if isinstance(body, list):
        return [render(v, now, run) for v in body]
    if isinstance(body, str) and (match := _PLACEHOLDER.match(body)):
        kind, arg = match.groups()
        if kind == "wamid":
            return f"wamid.DEMO{run}{arg.upper()}"
        return str(now + int(arg)) if kind == "ts" else now + int(arg)
    return body


def signature(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def send_sample(client: httpx.Client, secret: bytes, *, now: int | None = None) -> list[str]:
    """POST each step, signed, to ``client``'s webhook; returns the step labels sent.

    Raises RuntimeError naming the step the service refused."""
    sample = load_sample()
    now = now if now is not None else int(datetime.now(UTC).timestamp())
    run = secrets.token_hex(6).upper()
    sent = []
    for step in sample["steps"]:
        body = json.dumps(render(step["body"], now, run), ensure_ascii=False).encode()
        answer = client.post(
            WEBHOOK_PATH,
            content=body,
            headers={"X-Hub-Signature-256": signature(body, secret),
                     "Content-Type": "application/json"},
        )  # fmt: skip
        if answer.status_code != 200:
            raise RuntimeError(
                f"the service refused step {step['label']!r}: HTTP {answer.status_code} "
                f"{answer.text[:200]}"
            )
        sent.append(str(step["label"]))
    return sent


@app.command("demo")
def demo(
    url: Annotated[
        str,
        typer.Option(envvar="ARCHIVER_URL", help="Base URL of the running service."),
    ] = "http://127.0.0.1:8080",
) -> None:
    """Send a sample conversation to the running service.

    The deliveries are signed like Meta's, with the archive's app secret. Then prints how
    to search them, with a fresh compliance_officer token.
    """
    import httpx

    from archiver.auth import Role
    from archiver.cli.archive import check_archive
    from archiver.logs import configure_logging
    from archiver.runtime import Runtime

    # The running service's archive: its app secret signs, its token store takes the token.
    settings = check_archive(create=False)
    configure_logging(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    keys = settings.app_secret_list()
    if not keys:
        typer.echo("error: no app secret (ARCHIVER_APP_SECRETS) to sign with", err=True)
        raise typer.Exit(2)
    base = url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=30.0) as client:
            sent = send_sample(client, keys[0])
    except httpx.HTTPError as exc:
        typer.echo(f"error: cannot reach the service at {base}: {exc}", err=True)
        raise typer.Exit(1) from exc
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    runtime = Runtime.open(settings, create=False)
    # A short-lived token: the demo is for looking around, not for keeping.
    token, record = runtime.tokens.create(
        role=Role.COMPLIANCE_OFFICER, name="demo", expires_in_days=7
    )
    term = load_sample()["search"]
    typer.echo(f"sent {len(sent)} signed deliveries to {base}{WEBHOOK_PATH}:")
    for label in sent:
        typer.echo(f"  - {label}")
    typer.echo("")
    typer.echo(
        f"Search it (token {record.token_id}: compliance_officer, expires {record.expires_at}):"
    )
    query = term.replace(" ", "+")
    typer.echo(f"  curl -s -H 'Authorization: Bearer {token}' '{base}/v1/search?q={query}'")
    typer.echo('Other words to try: STOP, blue, "wrong chat" (revoked, still archived).')
    if not settings.graph_token.get_secret_value():
        typer.echo(
            "No Graph API token (ARCHIVER_GRAPH_TOKEN): the image cannot be fetched from "
            "Meta; its message shows the media as not fetched."
        )
