"""Long commands report progress on stderr (issue 13, CLI polish): verify, dispose,
retention apply, holds backfill-conversations and reindex. Off a terminal (as here) they
print a line every ``LINE_EVERY_S`` seconds, set to 0 so every step prints; stdout keeps
only the command's output."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archiver import cli
from archiver.cli import progress as cli_progress
from archiver.ingest.rawbatch import Delivery
from archiver.runtime import Runtime
from archiver.settings import get_settings
from tests.conftest import shared_dir


@pytest.fixture
def archive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in ("ARCHIVER_CONFIG_FILE", "ARCHIVER_STORE", "ARCHIVER_INDEX", "ARCHIVER_MODE"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "archive-data"
    monkeypatch.setenv("ARCHIVER_DATA_DIR", str(folder))
    monkeypatch.setenv("ARCHIVER_INLINE_WORKERS", "false")
    monkeypatch.setattr(cli_progress, "LINE_EVERY_S", 0.0)
    get_settings.cache_clear()
    assert cli.main(["init"]) == 0
    get_settings.cache_clear()
    rt = Runtime.open(get_settings())
    try:
        fixtures = shared_dir() / "fixtures" / "whatsapp"
        bodies = [(fixtures / f"{name}.json").read_bytes()
                  for name in ("messages_text", "messages_image", "smb_message_echoes")]
        now = datetime.now(UTC).isoformat()
        batch = rt.capture_writer.write(
            [Delivery(b, now, "sha256=x", 0, "application/json") for b in bodies])
        assert rt.processor.process(batch.key, batch.version_id).status == "done"
        rt.follower.catch_up()
        rt.audit.flush()
    finally:
        rt.close()
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


COMMANDS = [
    (["verify", "--grace", "0"], r"verifying: (\d+)/(\d+) object versions"),
    (["dispose", "--dry-run"], r"disposing: (\d+)/(\d+) candidates"),
    (["retention", "apply", "--dry-run"], r"re-deciding: (\d+) records"),
    (["holds", "backfill-conversations"], r"tracing: (\d+) records"),
    (["reindex"], r"reindexing: (\d+)/(\d+) leaves"),
]


@pytest.mark.parametrize(("argv", "line"), COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_a_long_command_reports_its_progress_on_stderr(
    archive: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 1), err  # verify exits 1 on a finding; progress is shown either way
    found = [m.groups() for m in re.finditer(line, err)]
    assert found, err
    last = [int(g) for g in found[-1]]
    # Nothing is due in a fresh archive: dispose shows 0/0; the others walk real objects.
    assert last[0] >= (0 if argv[0] == "dispose" else 1)
    if len(last) == 2:
        assert last[0] == last[1]  # it reaches the end
    assert not re.search(line, out)  # stdout stays the command's output
    if argv[0] in ("dispose", "retention", "holds"):
        json.loads(out)
