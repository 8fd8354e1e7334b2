"""issue 14 #8: deep or huge queries answer 400 naming the limit, and are audited.

Before: ~250 nested parentheses raised RecursionError (500, no audit event); 900 ``-``
signs or 150 nested ANDs overflowed SQLite's parser (503 ``index_unavailable``). Now the
grammar bounds length, depth and terms (``search.query.LIMITS``), on both backends; and
the deepest and largest queries it accepts run on both engines.
"""

from __future__ import annotations

from typing import Any

import pytest

from archiver.auth import Role
from search.query import MAX_DEPTH, MAX_QUERY_CHARS, MAX_TERMS
from tests.integration.api.conftest import BACKENDS, App
from tests.support.webhooks import Number, post

A = Number("15550001111", "1001")
ALICE = "16505550001"
T0 = 1_700_000_000


@pytest.fixture(scope="module", params=BACKENDS)
def app(request: pytest.FixtureRequest, make_module_app: Any) -> App:
    app: App = make_module_app(request.param)
    post(app.client, A.text(ALICE, "wamid.L1", T0, "refund for my card please"))
    app.settle()
    return app


def nested_parens(n: int) -> str:
    return "(" * n + "refund" + ")" * n


def nested_ands(n: int) -> str:
    return "".join(f"(w{i} AND " for i in range(n)) + "refund" + ")" * n


def widest_deep() -> str:
    """The worst case the grammar accepts: each group an OR over an AND (2 bool levels)."""
    q = "refund OR card refund"
    for _ in range(MAX_DEPTH):
        q = f"refund OR card ({q})"
    return q


REFUSED = [
    ("parens_250", nested_parens(250), "query_too_deep", "depth", MAX_DEPTH),
    ("minus_900", "-" * 900 + "refund", "query_too_deep", "depth", MAX_DEPTH),
    ("ands_150", nested_ands(150), "query_too_deep", "depth", MAX_DEPTH),
    ("nots_and_groups", "-(" * 5 + "refund" + ")" * 5, "query_too_deep", "depth", MAX_DEPTH),
    ("terms", " OR ".join(["refund"] * (MAX_TERMS + 1)), "query_too_many_terms", "terms",
     MAX_TERMS),
    ("length", "refund " * (MAX_QUERY_CHARS // 7 + 1), "query_too_long", "length",
     MAX_QUERY_CHARS),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "q", "code", "limit", "maximum"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_over_a_limit_is_400_naming_it_and_audited(
    app: App, name: str, q: str, code: str, limit: str, maximum: int
) -> None:
    legal = app.token(Role.LEGAL)
    r = app.get("/v1/search", legal, q=q)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] == code
    assert err["details"]["limit"] == limit and err["details"]["maximum"] == maximum
    assert isinstance(err["details"]["position"], int)
    # The refused search is on the record, with the outcome and a bounded query text.
    app.runtime.audit.flush()
    events = app.get("/v1/audit", app.token(Role.AUDITOR), action="search:executed").json()
    mine = [e["details"] for e in events["events"] if e["details"].get("outcome") == code
            and e["actor"]["role"] == "legal"]  # fmt: skip
    assert mine, f"no audit event for the refused search {name}"
    assert any(d["query"] == q[:MAX_QUERY_CHARS] for d in mine)
    if len(q) > MAX_QUERY_CHARS:
        assert any(d.get("query_truncated") and d["query_chars"] == len(q) for d in mine)


ACCEPTED = [
    ("deepest", widest_deep()),
    ("negations", "-" * MAX_DEPTH + "card refund"),
    ("parens", nested_parens(MAX_DEPTH)),
    ("ands", nested_ands(MAX_DEPTH)),
    ("most_terms", " OR ".join(["refund"] * MAX_TERMS)),
    ("longest", " ".join(["refundcard".ljust(MAX_QUERY_CHARS // MAX_TERMS - 1, "x")] * MAX_TERMS)),
]


@pytest.mark.parametrize(("name", "q"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_queries_at_the_limits_run_on_the_engine(app: App, name: str, q: str) -> None:
    r = app.get("/v1/search", app.token(Role.LEGAL), q=q)
    assert r.status_code == 200, (name, r.status_code, r.text[:300])
    assert isinstance(r.json()["total"], int)
