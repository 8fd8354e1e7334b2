"""``/v1/search``, ``/v1/conversations``, ``/v1/audit`` and reindex through the real app,
the same cases on SQLite and on a real Elasticsearch node."""

from __future__ import annotations

from typing import Any

import pytest

from archiver.auth import Role
from archiver.indexing.reindex import reindex
from tests.integration.api.conftest import BACKENDS, App, drop_es_alias
from tests.support.webhooks import Number, post

A = Number("15550001111", "1001")
B = Number("15550002222", "2002")
ALICE, BOB, CARL = "16505550001", "16505550002", "4915112345678"
T0 = 1_700_000_000


def load(app: App) -> None:
    c = app.client
    post(c, A.text(ALICE, "wamid.A1", T0, "I need a refund for my card", name="Ali"))
    post(c, A.status(ALICE, "wamid.A2", T0 + 70, "delivered"))  # before its message
    post(c, A.echo(ALICE, "wamid.A2", T0 + 60, "Your refund is on its way"))
    post(c, A.status(ALICE, "wamid.A2", T0 + 80, "read"))
    post(c, A.edit(ALICE, "wamid.A3", T0 + 100, "wamid.A1", "I need a refund for my debit card"))
    post(c, A.text(ALICE, "wamid.A4", T0 + 200, "secret account number 12345"))
    post(c, A.revoke(ALICE, "wamid.A5", T0 + 210, "wamid.A4"))
    post(c, A.reaction(ALICE, "wamid.A6", T0 + 220, "wamid.A2", "\U0001f44d"))
    post(c, A.contact_sync(ALICE, T0 + 300, "Alice Doe"))
    post(c, A.history(BOB, [("wamid.H1", T0 - 86400, "old refund question", True),
                            ("wamid.H2", T0 - 86300, "answered refund", False)]))  # fmt: skip
    image = {"type": "image", "image": {"caption": "receipt photo", "mime_type": "image/jpeg",
             "sha256": "abc", "id": "m1"}}  # fmt: skip
    post(c, A.inbound(BOB, "wamid.A7", T0 + 400, image))
    post(c, B.text(CARL, "wamid.B1", T0 + 500, "refund please, other number"))
    app.settle()


@pytest.fixture(scope="module", params=BACKENDS)
def app(request: pytest.FixtureRequest, make_module_app: Any) -> App:
    # One loaded app per backend for the module; tests that write run last in the file.
    app: App = make_module_app(request.param)
    load(app)
    return app


def ids(body: dict[str, Any]) -> list[str]:
    return [h["id"] for h in body["hits"]]


def test_search_text_totals_facets_highlights(app: App) -> None:
    h = app.token(Role.COMPLIANCE_OFFICER)
    r = app.get("/v1/search", h, q="refund")
    assert r.status_code == 200, r.text
    body = r.json()
    # A1 (and its edit), A2 echo, H1, H2, B1
    assert body["total"] == 6
    texts = {hit["message"]["text"] for hit in body["hits"]}
    assert "refund please, other number" in texts
    assert body["facets"]["number"] == {"1001": 5, "2002": 1}  # by phone_number_id
    assert body["facets"]["display_number"] == {"15550001111": 5, "15550002222": 1}
    assert body["facets"]["origin"]["history"] == 2
    assert sum(body["facets"]["day"].values()) == 6
    assert any("<em>refund</em>" in f for hit in body["hits"] for f in hit["highlights"]["text"])


def test_filters_as_parameters(app: App) -> None:
    h = app.token(Role.LEGAL)
    body = app.get("/v1/search", h, q="refund", origin="history").json()
    assert body["total"] == 2
    body = app.get("/v1/search", h, type="image").json()
    assert body["total"] == 1
    msg = body["hits"][0]["message"]
    assert msg["media_mime"] == "image/jpeg" and msg["text"] == "receipt photo"
    body = app.get(
        "/v1/search", h, q="refund", direction="outbound", display_number="+1 555 000 1111"
    ).json()
    assert {hit["message"]["origin"] for hit in body["hits"]} == {"business_app", "history"}
    body = app.get(
        "/v1/search", h, date_from="2023-11-14", date_to="2023-11-15", number="1001"
    ).json()
    # A1, A2, A3 edit, A4, A5 revoke, A6 reaction, A7 (H* the day before); since issue 15
    # every event is a document too: A2's two statuses and the contact sync.
    assert body["total"] == 10
    assert body["facets"]["kind"] == {"message": 6, "echo": 1, "status": 2, "contact_sync": 1}
    body = app.get(
        "/v1/search", h, date_from="2023-11-14", date_to="2023-11-15", number="1001",
        kind="message,echo",
    ).json()
    assert body["total"] == 7
    body = app.get("/v1/search", h, **{"from": ALICE, "type": "text"}).json()
    assert body["total"] == 2  # A1 and A4


def test_bad_query_is_400_with_position(app: App) -> None:
    r = app.get("/v1/search", app.token(Role.AUDITOR), q='refund AND ("card')
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "query_syntax" and err["details"]["position"] == 12
    assert app.get("/v1/search", app.token(Role.AUDITOR), facets="colour").status_code == 400


def test_roles(app: App) -> None:
    assert app.get("/v1/search", app.token(Role.SERVICE), q="x").status_code == 403
    assert app.get("/v1/search", {}, q="x").status_code == 401
    assert app.get("/v1/audit", app.token(Role.COMPLIANCE_OFFICER)).status_code == 403


def test_cursor_walks_every_hit_once(app: App) -> None:
    h = app.token(Role.ADMIN)
    total = app.get("/v1/search", h, size=0).json()["total"]
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params = {"size": 2, **({"cursor": cursor} if cursor else {})}
        body = app.get("/v1/search", h, **params).json()
        seen += ids(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # 10 messages, 2 statuses, the contact sync and the history chunk (issue 15: every
    # event is a document).
    assert len(seen) == len(set(seen)) == total == 14


def test_scoped_token_never_sees_other_numbers(app: App) -> None:
    only_b = app.token(Role.COMPLIANCE_OFFICER, numbers=["2002"])  # phone_number_id
    body = app.get("/v1/search", only_b, q="refund").json()
    assert body["total"] == 1
    assert set(body["facets"]["number"]) == {"2002"}
    assert all(hit["message"]["business_number"] == "15550002222" for hit in body["hits"])
    # Asking for the other number explicitly finds nothing, totals and facets included.
    body = app.get("/v1/search", only_b, number="1001").json()
    assert body["total"] == 0 and body["facets"]["number"] == {}
    # Threads of the other number are as if they did not exist.
    admin = app.token(Role.ADMIN)
    conv = app.get("/v1/search", admin, q="debit").json()["hits"][0]["message"]["conversation"]
    assert app.get(f"/v1/conversations/{conv}", admin).status_code == 200
    r = app.get(f"/v1/conversations/{conv}", only_b)
    assert r.status_code == 404 and r.json()["error"]["code"] == "conversation_not_found"


def _alice_thread(app: App, role: Role) -> dict[str, Any]:
    h = app.token(role)
    conv = app.get("/v1/search", h, q="debit").json()["hits"][0]["message"]["conversation"]
    r = app.get(f"/v1/conversations/{conv}", h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_thread_in_order_with_folds(app: App) -> None:
    thread = _alice_thread(app, Role.LEGAL)
    events = thread["events"]
    assert [e["type"] for e in events] == ["text", "text", "text"]  # A1, A2 echo, A4
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    a1, a2, a4 = events
    assert a1["text"] == "I need a refund for my card" and a1["edited"] is True
    assert [e["text"] for e in a1["edits"]] == ["I need a refund for my debit card"]
    assert a2["origin"] == "business_app" and a2["status"] == "read"
    assert set(a2["status_times"]) == {"delivered", "read"}
    assert [r["emoji"] for r in a2["reactions"]] == ["\U0001f44d"]
    assert a4["revoked"] is True and a4["text"] == "secret account number 12345"
    assert a4["redacted"] is False
    assert thread["contact_name"] == "Alice Doe"  # from contact sync, after the messages


def test_thread_redacts_revoked_text_for_auditors(app: App) -> None:
    a4 = _alice_thread(app, Role.AUDITOR)["events"][2]
    assert a4["revoked"] is True and a4["redacted"] is True and a4["text"] is None
    h = app.token(Role.AUDITOR)
    body = app.get("/v1/search", h, q="secret").json()
    assert body["total"] == 1
    assert body["hits"][0]["message"]["text"] is None and body["hits"][0]["highlights"] == {}


def test_thread_pages(app: App) -> None:
    h = app.token(Role.ADMIN)
    conv = app.get("/v1/search", h, q="debit").json()["hits"][0]["message"]["conversation"]
    first = app.get(f"/v1/conversations/{conv}", h, size=2).json()
    assert len(first["events"]) == 2 and first["next_cursor"]
    second = app.get(f"/v1/conversations/{conv}", h, size=2, cursor=first["next_cursor"]).json()
    assert len(second["events"]) == 1 and second["next_cursor"] is None
    assert second["events"][0]["ts"] >= first["events"][1]["ts"]


def test_reads_are_audited(app: App) -> None:
    legal = app.token(Role.LEGAL)
    app.get("/v1/search", legal, q="refund", type="text")
    _alice_thread(app, Role.COMPLIANCE_OFFICER)
    app.runtime.audit.flush()
    auditor = app.token(Role.AUDITOR)
    body = app.get("/v1/audit", auditor, action="search:executed").json()
    mine = [e for e in body["events"] if e["details"].get("query") == "refund"
            and e["actor"]["role"] == "legal"]  # fmt: skip
    assert mine and mine[-1]["details"]["filters"] == {"type": ["text"]}
    assert mine[-1]["details"]["results"] == 5  # A1, A2, H1, H2, B1
    threads = app.get("/v1/audit", auditor, action="thread:viewed").json()["events"]
    assert threads and threads[-1]["actor"]["role"] == "compliance_officer"
    assert threads[-1]["details"]["returned"] == 3
    page = app.get("/v1/audit", auditor, size=1).json()
    assert len(page["events"]) == 1 and page["next_cursor"]
    assert app.get("/v1/audit", auditor, action="nope").status_code == 400


def test_metrics_show_index_lag(app: App) -> None:
    app.settle()  # reads append audit leaves to the log; the follower consumes them too
    r = app.client.get("/metrics")
    assert r.status_code == 200
    assert "archiver_index_lag 0.0" in r.text
    assert "archiver_searches_total" in r.text


def test_reindex_gives_the_same_results(app: App) -> None:
    h = app.token(Role.ADMIN)
    queries: list[dict[str, Any]] = [{"q": "refund"}, {}, {"type": "image"}, {"q": "debit"}]

    def snapshot() -> list[tuple[int, list[str], dict[str, Any]]]:
        out = []
        for params in queries:
            body = app.get("/v1/search", h, size=50, **params).json()
            out.append((body["total"], sorted(ids(body)), body["facets"]))
        thread = _alice_thread(app, Role.ADMIN)
        out.append((thread["total"], [e["record_id"] for e in thread["events"]], {}))
        return out

    before = snapshot()
    rt = app.runtime
    # Drop the index.
    if app.backend == "elasticsearch":
        drop_es_alias(rt)
        rt.index.ensure_index()
    else:
        from search.port import SearchRequest

        rt.index.delete_matching(SearchRequest())
    assert app.get("/v1/search", h).json()["total"] == 0
    rt.audit.flush()  # the searches' audit leaves are in the log before the rebuild starts
    result = reindex(
        index=rt.index, log_reader=rt.log, objects=rt.objects, state=rt.state,
        keys=rt.keys, pseudo=rt.pseudo,
    )  # fmt: skip
    assert result.leaves == rt.log.size()
    assert snapshot() == before
    app.settle()  # the snapshot's reads appended audit leaves
    assert rt.follower.lag() == 0  # the app follows the new generation from its cursor
    # New webhooks after the swap are indexed into the new index.
    post(app.client, A.text(ALICE, "wamid.A9", T0 + 900, "after the rebuild"))
    app.settle()
    assert app.get("/v1/search", h, q="rebuild").json()["total"] == 1
