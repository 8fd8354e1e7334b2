"""A seeded archive for the case tests: two business numbers, two contacts, every record
kind a case export needs (messages, echoes, history sync, edits, revokes, reactions,
statuses), inside and outside one case's scope."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from archiver.auth import Role
from archiver.retention import holds
from archiver.retention.common import record_by_id
from archiver.runtime import Runtime
from search.port import SearchRequest
from tests.support.webhooks import Number, post

N1 = Number("15550001111", "111000111")  # (display number, phone_number_id)
N2 = Number("15550002222", "222000222")
ALICE, BOB = "16505550001", "4915112345678"
CARL = "447700900123"  # a stranger: the fillers of an index lag
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR, DAY = 3600, 86400
DATE_FROM, DATE_TO = "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z"


def new_wamid() -> str:
    return f"wamid.{secrets.token_hex(8)}"


@dataclass
class Seeded:
    in_scope: dict[str, str] = field(default_factory=dict)  # label -> record id
    out_of_scope: dict[str, str] = field(default_factory=dict)


class Archive:
    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.client, self.rt = client, runtime

    def post(self, body: bytes) -> None:
        post(self.client, body)
        self.rt.processor.sweep()
        self.rt.follower.run_to_end()
        self.refresh()

    def token(self, role: Role, numbers: list[str] | None = None) -> dict[str, str]:
        plain, _ = self.rt.tokens.create(role=role, name=f"{role.value}-{secrets.token_hex(2)}",
                                         numbers=numbers)  # fmt: skip
        return {"Authorization": f"Bearer {plain}"}

    def refresh(self) -> None:
        refresh = getattr(self.rt.index, "refresh", None)
        if callable(refresh):
            refresh()

    def held(self, record_id: str) -> bool:
        """Whether the record's stored version carries the legal hold."""
        r = record_by_id(self.rt.objects, record_id)
        return bool(self.rt.objects.stat(r.key, r.version_id).legal_hold)

    def group_thread_with_a_lag(
        self, monkeypatch: pytest.MonkeyPatch, *, reaction_first: bool
    ) -> None:
        """Alice's group message, indexed; then, logged but not indexed, Bob's reaction to
        it and six fillers of Carl's, in either order, more leaves than a hold request reads
        itself (``FAMILY_TAIL_IN_REQUEST`` patched to 4)."""
        monkeypatch.setattr(holds, "FAMILY_TAIL_IN_REQUEST", 4, raising=False)
        group = "HBgL" + secrets.token_hex(12)
        parent = new_wamid()
        self.post(N1.inbound(ALICE, parent, T0 + HOUR,
                             {"type": "text", "text": {"body": "group plans"}, "group_id": group},
                             name="Alice"))  # fmt: skip
        reaction = N1.inbound(BOB, new_wamid(), T0 + 2 * HOUR, {
            "type": "reaction", "reaction": {"message_id": parent, "emoji": "\U0001f44d"},
            "group_id": group}, name="Bob")  # fmt: skip
        fillers = [N1.text(CARL, new_wamid(), T0 + 3 * HOUR + n, f"filler {n}") for n in range(6)]
        for body in [reaction, *fillers] if reaction_first else [*fillers, reaction]:
            post(self.client, body)
        self.rt.processor.sweep()
        assert self.rt.log.size() - holds.indexed_size(self.rt.state) > 4

    def lag_indexed(self) -> tuple[dict[str, Any], list[str]]:
        """The index catches up: Bob's reaction's document and the fillers' ids."""
        self.rt.follower.run_to_end()
        self.refresh()
        reaction = next(d for d in self.docs() if d.get("type") == "reaction")
        fillers = [d["id"] for d in self.docs() if str(d.get("text") or "").startswith("filler")]
        assert reaction.get("contact") == BOB and len(fillers) == 6
        return reaction, fillers

    def docs(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.rt.index.search(SearchRequest(size=1000, cursor=cursor, sort="time_asc"))
            out += [{**h.doc, "id": h.id} for h in page.hits]
            cursor = page.next_cursor
            if not cursor or not page.hits:
                return out

    def seed(self) -> Seeded:
        """Case scope used by the tests: query ``merger``, 2026-01-01 to 2026-01-03, number
        N1, custodian contact ALICE."""
        w = {k: f"wamid.{k}{secrets.token_hex(6)}" for k in
             ("m1", "m2", "e1", "ed", "rv", "rx", "h1", "h2", "bob", "n2", "m0")}
        self.post(N1.text(ALICE, w["m1"], T0 + HOUR, "merger plans alpha", name="Alice"))
        self.post(N1.text(ALICE, w["m2"], T0 + 2 * HOUR, "lunch tomorrow", name="Alice"))
        self.post(N1.echo(ALICE, w["e1"], T0 + 3 * HOUR, "merger reply from the phone"))
        self.post(N1.status(ALICE, w["e1"], T0 + 4 * HOUR, "read"))
        self.post(N1.reaction(ALICE, w["rx"], T0 + 5 * HOUR, w["e1"], "\U0001f44d"))
        self.post(N1.history(ALICE, [(w["h1"], T0 + 6 * HOUR, "merger history one", True),
                                     (w["h2"], T0 - 5 * DAY, "merger history old", False)]))
        self.post(N1.edit(ALICE, w["ed"], T0 + 3 * DAY, w["m1"], "merger plans beta"))
        self.post(N1.revoke(ALICE, w["rv"], T0 + 3 * DAY + 60, w["m1"]))
        self.post(N1.status(ALICE, w["m2"], T0 + 2 * HOUR + 5, "read"))  # m2 is out
        self.post(N1.text(BOB, w["bob"], T0 + HOUR, "merger from bob", name="Bob"))
        self.post(N2.text(ALICE, w["n2"], T0 + HOUR, "merger on the other number"))
        self.post(N1.text(ALICE, w["m0"], T0 - DAY, "merger too early", name="Alice"))
        return self.classify()

    def classify(self) -> Seeded:
        seeded = Seeded()
        for d in self.docs():
            text = str(d.get("text") or "")
            label = (f"{d.get('kind')}:{d.get('type')}:{text[:20]}:{d.get('status')}"
                     f":{d.get('phone_number_id')}:{d.get('ts')}")
            inside = d.get("phone_number_id") == N1.pnid and d.get("contact") in (ALICE, None) and (
                text in ("merger plans alpha", "merger reply from the phone",
                         "merger history one", "merger plans beta")
                or d.get("type") in ("reaction", "revoke")
                or (d.get("kind") == "status" and str(d.get("ts", "")) == "2026-01-01T04:00:00Z")
            )
            (seeded.in_scope if inside else seeded.out_of_scope)[label] = str(d["id"])
        return seeded
