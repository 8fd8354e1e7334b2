"""Issue 15 §5: two-person approval counts distinct *persons* (tokens bound with
``--person``), only approvers whose token can see the record, writes an audit event and a
``disposition_approved`` leaf, and is bound to the record's key and version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.ledger.entry import EntryKind
from archiver.retention.disposition import DispositionJob
from archiver.runtime import Runtime
from tests.support.apps import running_app
from tests.support.disposition_media import (
    REVIEW_TWO,
    archive_with,
    base_overrides,
    pass_expiry,
    post,
    present,
    soon,
    write_policy,
)
from tests.support.retention import (
    PHONE_NUMBER_ID,
    Msg,
    body_for,
    log_entries,
)

pytestmark = pytest.mark.integration


def bearer(rt: Runtime, *, name: str, person: str | None,
           numbers: list[str] | None = None, role: Role = Role.COMPLIANCE_OFFICER
           ) -> dict[str, str]:
    plain, _ = rt.tokens.create(role=role, name=name, numbers=numbers, person=person)
    return {"Authorization": f"Bearer {plain}"}


@contextmanager
def queued(request: pytest.FixtureRequest, tmp: Path
           ) -> Iterator[tuple[TestClient, Runtime, DispositionJob, str, bytes]]:
    """An archive with one message waiting for two-person review."""
    base = base_overrides(request, "embedded")
    with archive_with(tmp, base, write_policy(tmp, REVIEW_TWO)) as (client, rt):
        until = soon("embedded")
        body = body_for([Msg("447700900401", "to review", until)])
        post(client, rt, body)
        job = pass_expiry(rt, "embedded", until)
        (record_id,) = job.run().queued_for_review
        yield client, rt, job, record_id, body


def approve(client: TestClient, record_id: str, headers: dict[str, str]) -> Any:
    return client.post(f"/v1/disposition/reviews/{record_id}/approve", headers=headers)


def review(rt: Runtime, record_id: str) -> dict[str, Any]:
    value = rt.state.get(f"disposition/reviews/{record_id}")
    assert value is not None
    doc: dict[str, Any] = json.loads(value.value)
    return doc


def test_two_tokens_of_one_person_are_one_approver(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with queued(request, tmp_path) as (client, rt, job, record_id, _):
        first = approve(client, record_id, bearer(rt, name="alice", person="p-alice"))
        assert first.status_code == 200, first.text
        again = approve(client, record_id, bearer(rt, name="alice", person="p-alice"))
        assert again.status_code == 409 and again.json()["error"]["code"] == \
            "review_same_approver"
        assert review(rt, record_id)["status"] == "pending"
        assert job.run().disposed == []  # one person is not two


def test_two_tokens_named_alike_but_of_two_people_count_twice(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with queued(request, tmp_path) as (client, rt, job, record_id, _):
        for person in ("p-alice-1", "p-alice-2"):
            r = approve(client, record_id, bearer(rt, name="alice", person=person))
            assert r.status_code == 200, r.text
        assert review(rt, record_id)["status"] == "approved"
        assert [d.kind for d in job.run().disposed] == ["record"]


def test_a_token_without_a_person_cannot_approve(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with queued(request, tmp_path) as (client, rt, _job, record_id, _):
        r = approve(client, record_id, bearer(rt, name="bob", person=None))
        assert r.status_code == 403 and r.json()["error"]["code"] == "approver_without_person"
        assert review(rt, record_id)["approvals"] == []


def test_a_token_that_cannot_see_the_record_does_not_count(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with queued(request, tmp_path) as (client, rt, job, record_id, _):
        elsewhere = bearer(rt, name="carol", person="p-carol", numbers=["999999999999"])
        r = approve(client, record_id, elsewhere)
        assert r.status_code == 404, r.text
        assert review(rt, record_id)["approvals"] == []
        ok = approve(client, record_id, bearer(rt, name="dave", person="p-dave",
                                               numbers=[PHONE_NUMBER_ID]))
        assert ok.status_code == 200, ok.text
        assert job.run().disposed == []  # one approver who can see it, not two


def test_an_approval_is_logged_and_audited(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with queued(request, tmp_path) as (client, rt, _job, record_id, _):
        doc = review(rt, record_id)
        r = approve(client, record_id, bearer(rt, name="erin", person="p-erin"))
        assert r.status_code == 200, r.text
        leaves = [e for e in log_entries(rt) if e.kind is EntryKind.DISPOSITION_APPROVED]
        assert [(e.key, e.version_id, e.fields["person"], e.fields["record_id"])
                for e in leaves] == [(doc["key"], doc["version_id"], "p-erin", record_id)]
        rt.audit.flush()
        events = list(rt.audit.events(action="disposition:approved"))
        assert len(events) == 1 and events[0]["details"]["record_id"] == record_id
        assert events[0]["details"]["version_id"] == doc["version_id"]


def test_approvals_do_not_carry_over_to_a_later_version_at_the_same_id(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with queued(request, tmp_path) as (client, rt, job, record_id, body):
        first = review(rt, record_id)
        for person in ("p-frank", "p-grace"):
            assert approve(client, record_id,
                           bearer(rt, name=person, person=person)).status_code == 200
        assert [d.version_id for d in job.run().disposed] == [first["version_id"]]
        # Meta delivers the same message again: a new version at the disposed id.
        post(client, rt, body)
        again = job.run()
        assert again.disposed == [] and again.queued_for_review == [record_id]
        doc = review(rt, record_id)
        assert doc["status"] == "pending" and doc["version_id"] != first["version_id"]
        assert present(rt, (doc["key"], doc["version_id"]))


def test_token_create_cli_binds_a_person(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from archiver.cli import app
    from tests.support.apps import embedded_settings, settings_env

    settings = embedded_settings(tmp_path / "data")
    with running_app(settings):
        pass  # create the archive's folders and keys once
    result = CliRunner().invoke(
        app, ["token", "create", "--role", "compliance_officer", "--name", "alice",
              "--person", "emp-0042"], env=settings_env(settings))
    assert result.exit_code == 0, result.output
    assert "person=emp-0042" in result.output
