"""Every command's --help reads as user help: a summary line, help on every option and
argument, no literal double backticks, no developer notes (issue 13, finding 6)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from archiver import __version__
from archiver.cli import app, main


def _commands() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        found.append((path, command))
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk([*path, name], sub)

    walk([], root)
    return found


COMMANDS = _commands()


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"serve", "init", "verify", "token revoke", "log keygen", "dispose",
            "holds backfill-conversations", "index status", "coexistence sync"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "top")
def test_help_is_for_users(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "``" not in text, text
    assert "<bool>" not in text, text
    for dev_word in ("main(argv", "One module", "Developers:", "runtime"):
        assert dev_word not in text, (dev_word, text)
    command = {tuple(p): c for p, c in COMMANDS}[tuple(path)]
    assert (command.help or "").strip(), f"{path}: no help"
    for param in command.params:
        if param.param_type_name in ("option", "argument"):
            assert (getattr(param, "help", None) or "").strip(), f"{path}: {param.name} has no help"


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if p], ids=lambda p: " ".join(p))
def test_summary_line_is_a_whole_sentence(path: list[str]) -> None:
    """The list of commands shows the first sentence whole, never cut mid-sentence."""
    command = {tuple(p): c for p, c in COMMANDS}[tuple(path)]
    summary = command.get_short_help_str(limit=200)
    assert not summary.endswith("..."), summary
    assert len(summary) <= 55, f"{path}: summary too long for an 80-column list: {summary!r}"
    listing = CliRunner().invoke(app, [*path[:-1], "--help"], env={"COLUMNS": "80"}).output
    assert not re.search(rf"^\s+{re.escape(path[-1])}\s+.*\.\.\.$", listing, re.M), listing


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"wa-archiver {__version__}"
