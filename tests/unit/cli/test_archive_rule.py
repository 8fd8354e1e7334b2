"""One archive, found the same way by every command (issue 13, finding 2).

ARCHIVER_DATA_DIR, else the config file's data_dir, else ./archive-data; every command
prints the folder on stderr; only serve and init create an archive; a command run where
there is none fails with one clear line instead of quietly starting a second archive;
log keygen opens no archive at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from archiver import cli
from archiver.cli.archive import check_archive, start_facts
from archiver.settings import get_settings


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("ARCHIVER_DATA_DIR", "ARCHIVER_CONFIG_FILE", "ARCHIVER_STORE", "ARCHIVER_INDEX",
                 "ARCHIVER_MODE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARCHIVER_INLINE_WORKERS", "false")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    get_settings.cache_clear()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_command_where_there_is_no_archive_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "token", "list")
    assert code != 0
    assert out == ""
    assert err.count("\n") == 1, err  # one line, no traceback
    assert "archive_not_found" in err and str(tmp_path / "archive-data") in err, err
    assert not (tmp_path / "archive-data").exists()  # no fresh archive, no new dev secrets


def test_init_creates_then_every_command_finds_the_same_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "init")
    assert code == 0, err
    folder = tmp_path / "archive-data"
    assert (folder / "evidence").is_dir() and (folder / "dev-secrets.json").is_file()
    assert f"archive: {folder}" in err
    code, out, err = _run(capsys, "token", "create", "--role", "auditor", "--name", "t")
    assert code == 0, err
    assert f"archive: {folder}" in err
    token_id = err.split("id=")[1].split()[0]
    code, out, err = _run(capsys, "token", "list")
    assert code == 0 and out.startswith(token_id), (out, err)
    # token revoke takes the id that token create showed (or the whole token).
    code, out, err = _run(capsys, "token", "revoke", token_id)
    assert code == 0 and f"revoked {token_id}" in out, (out, err)


def test_the_rule_env_then_config_file_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from_file, from_env = tmp_path / "from-file", tmp_path / "from-env"
    config = tmp_path / "archiver.toml"
    config.write_text(f'data_dir = "{from_file}"\n')
    monkeypatch.setenv("ARCHIVER_CONFIG_FILE", str(config))
    assert _run(capsys, "init")[0] == 0
    assert (from_file / "evidence").is_dir()
    monkeypatch.setenv("ARCHIVER_DATA_DIR", str(from_env))
    code, _, err = _run(capsys, "holds", "list")
    assert code != 0 and str(from_env) in err  # the environment wins, and it is empty
    monkeypatch.delenv("ARCHIVER_DATA_DIR")
    code, _, err = _run(capsys, "holds", "list")
    assert code == 0 and f"archive: {from_file}" in err, err
    # serve's banner names the very same folder.
    get_settings.cache_clear()
    settings = check_archive(create=True, announce=False)
    assert start_facts(settings, host="127.0.0.1", port=8080, prog="archiver")["data_dir"] == str(
        from_file
    )


def test_offline_commands_open_no_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "log", "keygen", "--name", "example.com/log")
    assert code == 0 and out.startswith("PRIVATE+KEY+example.com/log+"), (out, err)
    assert "archive:" not in err
    assert list(tmp_path.iterdir()) == []


def test_unexpected_errors_are_one_line_unless_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(capsys, "init")[0] == 0

    def boom() -> None:
        raise RuntimeError("the disk\nis full")

    monkeypatch.setattr(cli, "open_runtime", boom)
    code, _out, err = _run(capsys, "token", "list")
    assert code == 1
    assert err == "error: RuntimeError: the disk is full (--debug shows the traceback)\n"
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "token", "list"])


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-command"],
        ["export"],
        ["token", "create", "--role", "emperor"],
        ["search", "--nope"],
    ],
)
def test_usage_errors_exit_2_with_clicks_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A usage error is the caller's mistake: exit 2 (click's convention, which scripts
    tell apart from a failed run's 1), with click's message, not a Python type name."""
    code, _out, err = _run(capsys, *argv)
    assert code == 2, err
    assert "Usage:" in err or "Error:" in err, err
    assert "UsageError:" not in err and "--debug" not in err, err
