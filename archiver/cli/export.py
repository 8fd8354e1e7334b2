"""``archiver verify-export FILE.zip --public-key KEY``: check an export package offline.

Opens no archive, reads no settings and creates no folder: an outside expert runs it on
a package and the log's public key, nothing else. Exit 0 when every check holds, 1 when
one fails (each named) or the key is not pinned, 2 for a file that cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
