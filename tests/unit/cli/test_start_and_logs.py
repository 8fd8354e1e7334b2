"""The start-up banner, GET /, and logs (issue 13, findings 4 and 5)."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from archiver.auth import Role
from archiver.cli.archive import announce_start, start_facts
from archiver.logs import configure_logging
from archiver.settings import Settings
from tests.support.apps import embedded_settings
from tests.support.retention import Msg, app_on, deliver, now, token


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_banner_on_a_terminal_says_where_everything_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = embedded_settings(tmp_path / "data")
    screen = _Tty()
    monkeypatch.setattr(sys, "stderr", screen)
    announce_start(settings, host="0.0.0.0", port=9123, prog=".venv/bin/archiver")
    text = screen.getvalue()
    folder = (tmp_path / "data").resolve()
    for expected in (
        "mode:         dev",
        f"data folder:  {folder}",
        f"store:        local folder {folder / 'evidence'}",
        f"index:        sqlite {folder / 'index.sqlite3'}",
        "listening on: http://0.0.0.0:9123",
        "webhook URL:  http://0.0.0.0:9123/webhooks/whatsapp",
        f"dev secrets:  {folder / 'dev-secrets.json'}",
        f'verify token: "verify_token" in {folder / "dev-secrets.json"}',
        'next:         .venv/bin/archiver token create --role compliance_officer',
    ):
        assert expected in text, (expected, text)
    assert settings.verify_token.get_secret_value() not in text


def test_banner_in_production_names_buckets_and_never_a_secret() -> None:
    settings = Settings(
        mode="production", store="s3", index="elasticsearch", s3_endpoint="s3.example:443",
        s3_secure=True, es_url="https://es.example:9200", verify_token="vt-very-secret",
        app_secrets="app-very-secret",
    )  # fmt: skip
    facts = start_facts(settings, host="0.0.0.0", port=8080, prog="archiver")
    assert facts["store"].startswith("s3 https://s3.example:443 buckets wa-evidence (locked)")
    assert facts["index"] == "elasticsearch https://es.example:9200 alias wa-messages"
    assert facts["dev_file"] == "none (production)"
    assert "very-secret" not in json.dumps(facts)


def test_banner_off_a_terminal_is_one_json_log_line(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path / "data")
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    announce_start(settings, host="127.0.0.1", port=8080, prog="archiver")
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "starting" and event["level"] == "info"
    assert event["data_dir"] == str((tmp_path / "data").resolve())
    assert event["webhook_url"].startswith("http://127.0.0.1:8080/webhooks/whatsapp")
    assert "dev-secrets.json" in event["verify_hint"] and "dev-secrets.json" in event["dev_file"]


def test_home_page_links_the_docs(tmp_path: Path) -> None:
    with app_on(tmp_path) as (client, _):
        r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'href="docs"' in r.text


def test_library_lines_are_json_and_scheduler_chatter_is_debug() -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    logging.getLogger("apscheduler.executors.default").info('Running job "x" (scheduled)')
    logging.getLogger("apscheduler.scheduler").warning("job missed")
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:1")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]  # every line is JSON
    assert [(e["logger"], e["level"]) for e in lines] == [
        ("apscheduler.scheduler", "warning"), ("uvicorn.error", "info")]
    assert lines[1]["event"] == "Uvicorn running on http://127.0.0.1:1"

    out = io.StringIO()
    configure_logging("DEBUG", stream=out)
    logging.getLogger("apscheduler.executors.default").info('Running job "x" (scheduled)')
    (event,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert event["level"] == "debug" and event["event"].startswith("Running job")


def test_readable_key_values_on_a_terminal() -> None:
    out = _Tty()
    configure_logging("INFO", stream=out)
    logging.getLogger("archiver.x").info("hello")
    from archiver.logs import get_logger

    get_logger("archiver.x").info("batch_processed", records=3)
    text = out.getvalue()
    assert "{" not in text and "batch_processed" in text and "records=3" in text


def test_one_info_line_per_batch_and_per_search_without_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with app_on(tmp_path, inline_workers=False) as (client, rt):
        capsys.readouterr()
        deliver(client, rt, [Msg("447700900021", "a private word", now())])
        r = client.get("/v1/search", params={"q": "private"},
                       headers=token(rt, Role.COMPLIANCE_OFFICER))  # fmt: skip
        assert r.status_code == 200 and r.json()["total"] == 1
    err = capsys.readouterr().err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    batch = [e for e in events if e["event"] == "batch_processed"]
    assert len(batch) == 1 and batch[0]["level"] == "info", err
    assert batch[0]["records"] >= 1 and batch[0]["duration_ms"] >= 0
    search = [e for e in events if e["event"] == "search"]
    assert len(search) == 1 and search[0]["results"] == 1 and "duration_ms" in search[0]
    assert "private" not in err  # neither the message nor the query
