"""Search benchmark: bulk load and a fixed query mix, through ``ElasticIndex`` and raw.

    eval "$(scripts/services env)"; .venv/bin/python bench/search.py [--n 1000000] [--runs 30]

The Elasticsearch URL is ``--url``, else ``ARCHIVER_TEST_ES_URL`` (as the other benches).

Generates N realistic message documents (several business numbers and contacts, text in
en/es/pt/de/hi, every message type), bulk-loads them (a) through ``ElasticIndex.upsert``
and (b) as raw ``_bulk`` NDJSON over plain HTTP into a twin index, then times each query
of a fixed mix three ways: through ``ElasticIndex.search``, through our HTTP API
(``GET /v1/search`` on an in-process uvicorn on loopback, real HTTP with httpx, token
auth, scoping and the audit trail included) and as the same DSL sent straight to
``_search``. Prints docs/s, p50/p95 latencies and the API/raw p95 ratio (targets:
API p95 < 150 ms, API <= 1.25x raw). Indices are deleted at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file, bench/ would shadow the ``search`` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from search import es_dsl
from search._common import check, decode_cursor
from search.elastic import ElasticIndex
from search.mapping import INDEX_SETTINGS, MESSAGE_MAPPING
from search.port import SearchRequest


def _w(words: str) -> list[str]:
    return words.split()


WORDS = {
    "en": _w(
        "refund card payment account order delivery invoice please thanks hello problem "
        "blocked transfer balance loan interest appointment doctor prescription price "
        "discount return package tracking urgent contract signature statement fee"
    ),
    "es": _w(
        "reembolso tarjeta pago cuenta pedido entrega factura gracias hola problema "
        "bloqueada transferencia saldo préstamo cita médico receta precio descuento "
        "devolución paquete urgente contrato firma comisión"
    ),
    "pt": _w(
        "reembolso cartão pagamento conta pedido entrega fatura obrigado olá problema "
        "bloqueado transferência saldo empréstimo consulta médico receita preço desconto "
        "devolução pacote urgente contrato assinatura taxa"
    ),
    "de": _w(
        "Rückerstattung Karte Zahlung Konto Bestellung Lieferung Rechnung danke hallo "
        "Problem gesperrt Überweisung Kontostand Kredit Termin Arzt Rezept Preis Rabatt "
        "Rücksendung Paket dringend Vertrag Unterschrift Gebühr"
    ),
    "hi": _w(
        "धनवापसी कार्ड भुगतान खाता ऑर्डर डिलीवरी चालान धन्यवाद नमस्ते समस्या अवरुद्ध "
        "स्थानांतरण शेष ऋण ब्याज नियुक्ति डॉक्टर पर्चा कीमत छूट वापसी पैकेज"
    ),
}
TYPES = ["text"] * 12 + [
    "image", "video", "audio", "document", "sticker", "location", "contacts", "reaction",
    "interactive", "button", "template",
]  # fmt: skip
ORIGINS = ["customer"] * 5 + ["business_app"] * 2 + ["business_api"] * 2 + ["history"]
NUMBERS = [f"1555000{i:04d}" for i in range(8)]
START = datetime(2023, 1, 1, tzinfo=UTC)


def generate(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    contacts = [f"{rng.choice(['49', '34', '55', '91', '1'])}{rng.randrange(10**9, 10**10)}"
                for _ in range(5000)]  # fmt: skip
    for i in range(n):
        lang = rng.choice(list(WORDS))
        kind = rng.choice(TYPES)
        origin = rng.choice(ORIGINS)
        number, contact = rng.choice(NUMBERS), rng.choice(contacts)
        inbound = origin in ("customer", "history") and rng.random() < 0.8
        words = rng.choices(WORDS[lang], k=rng.randint(3, 30))
        text = " ".join(words)
        if kind in ("image", "video", "document"):
            ext = {"image": "jpg", "video": "mp4"}.get(kind, "pdf")
            text = f"{text} {words[0].lower()}_{i}.{ext}"
        ts = START + timedelta(seconds=rng.randrange(0, 600 * 86400))
        doc: dict[str, Any] = {
            "id": f"msg-{i:09d}", "record_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "kind": "message", "text": text, "business_number": number,
            "phone_number_id": f"10{number}", "contact": contact,
            "from": contact if inbound else number, "to": number if inbound else contact,
            "direction": "inbound" if inbound else "outbound", "origin": origin,
            "type": kind, "ts": ts.isoformat().replace("+00:00", "Z"),
            "captured_at": (ts + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
            "status": rng.choice(["sent", "delivered", "read", "failed"]),
            "conversation": f"conv-{contact}-{number}", "policy": "finra-17a4",
            "leaf_index": i,
        }  # fmt: skip
        if rng.random() < 0.01:
            doc["holds"] = ["case-1"]
        yield doc


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def raw_bulk(http: httpx.Client, index: str, docs: Iterator[dict[str, Any]], chunk: int) -> int:
    count, lines = 0, []
    for d in docs:
        lines.append(json.dumps({"index": {"_index": index, "_id": d["id"]}}))
        lines.append(json.dumps(d, ensure_ascii=False))
        if len(lines) >= 2 * chunk:
            count += _send(http, lines)
            lines = []
    if lines:
        count += _send(http, lines)
    return count


def _send(http: httpx.Client, lines: list[str]) -> int:
    body = ("\n".join(lines) + "\n").encode()
    r = http.post("/_bulk", content=body, headers={"content-type": "application/x-ndjson"})
    r.raise_for_status()
    out = r.json()
    if out["errors"]:
        raise SystemExit(f"raw bulk errors: {out['items'][:1]}")
    return len(out["items"])


QUERIES: dict[str, SearchRequest] = {
    "full text": SearchRequest(q="refund card"),
    "phrase": SearchRequest(q='"refund card"'),
    "proximity+prefix": SearchRequest(q='"payment account"~3 OR reemb*'),
    "filters+date": SearchRequest(q="type:image date:[2023-06-01 TO 2023-09-30] origin:customer"),
    "facets": SearchRequest(q="urgent", facets=["type", "origin", "direction", "number", "day"]),
    "highlight": SearchRequest(q="contrato OR Vertrag", highlight=True),
    "exact total (all)": SearchRequest(q="", size=1),
    "relevance": SearchRequest(q="refund OR reembolso OR Rückerstattung", sort="relevance"),
    "scoped": SearchRequest(q="payment", scope_numbers=NUMBERS[:2], facets=["number"]),
}


def raw_body(req: SearchRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "query": es_dsl.query(check(req), req), "sort": es_dsl.sort(req),
        "size": req.size + 1, "track_total_hits": True,
    }  # fmt: skip
    if req.facets:
        body["aggs"] = es_dsl.aggs(req)
    if req.highlight:
        body["highlight"] = es_dsl.HIGHLIGHT
    return body


def api_params(req: SearchRequest) -> dict[str, Any]:
    """The same request as ``GET /v1/search`` query parameters (facets/highlight explicit)."""
    return {
        "q": req.q, "sort": req.sort, "size": req.size, "facets": ",".join(req.facets),
        "highlight": str(req.highlight).lower(),
    }  # fmt: skip


class ApiServer:
    """The real app on uvicorn in its own process (so the load generator does not share
    its interpreter), bound to 127.0.0.1, on the index the adapter loaded."""

    def __init__(self, es_url: str, alias: str, data_dir: Path) -> None:
        import os
        import socket
        import subprocess
        import sys

        from archiver.auth import TokenService
        from archiver.store.state_sqlite import SqliteStateStore

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
        env.update({
            "ARCHIVER_DATA_DIR": str(data_dir), "ARCHIVER_INDEX": "elasticsearch",
            "ARCHIVER_ES_URL": es_url, "ARCHIVER_ES_ALIAS": alias,
            "ARCHIVER_INLINE_WORKERS": "false", "ARCHIVER_LOCK_MODE": "GOVERNANCE",
            "ARCHIVER_LOG_LEVEL": "WARNING",
        })  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "archiver.api.app:create_app",
             "--port", str(port), "--log-level", "warning", "--no-access-log",
             "--loop", "uvloop", "--http", "httptools"],
            env=env,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the API server did not start")
            time.sleep(0.2)
        self.tokens = TokenService(SqliteStateStore(data_dir / "state.sqlite3"))

    def token(self, numbers: list[str] | None = None) -> str:
        from archiver.auth import Role

        token, _ = self.tokens.create(role=Role.COMPLIANCE_OFFICER, name="bench", numbers=numbers)
        return str(token)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def timed_pair(
    first: Callable[[], object], second: Callable[[], object], runs: int
) -> tuple[list[float], list[float]]:
    """Alternate the two calls so that machine noise lands on both alike."""
    first()
    second()
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        t = time.perf_counter()
        first()
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        second()
        b.append(time.perf_counter() - t)
    return a, b


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm caches once; the mix measures steady state
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return samples


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--url",
        default=os.environ.get("ARCHIVER_TEST_ES_URL"),
        help="Elasticsearch URL (default: ARCHIVER_TEST_ES_URL, from scripts/services env)",
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--deep-pages", type=int, default=100)
    args = ap.parse_args(argv)
    if not args.url:
        ap.error('no Elasticsearch: pass --url or run eval "$(scripts/services env)" first')

    tag = uuid.uuid4().hex[:8]
    ix = ElasticIndex(args.url, alias=f"bench-{tag}", refresh=False, request_timeout=120)
    raw_index = f"bench-raw-{tag}"
    http = httpx.Client(base_url=args.url, timeout=120)
    try:
        ix.ensure_index()
        http.put(f"/{raw_index}", json={"mappings": MESSAGE_MAPPING, "settings": INDEX_SETTINGS}
                 ).raise_for_status()  # fmt: skip

        # Warm the node (JIT, caches) so neither measured load pays for starting up.
        warm = f"bench-warm-{tag}"
        http.put(f"/{warm}", json={"mappings": MESSAGE_MAPPING, "settings": INDEX_SETTINGS})
        raw_bulk(http, warm, generate(min(args.n, 20_000), seed=1), args.chunk)
        http.delete(f"/{warm}")

        t = time.perf_counter()
        n_adapter = ix.upsert(generate(args.n))
        ix.refresh()
        adapter_s = time.perf_counter() - t
        t = time.perf_counter()
        # The raw twin gets the same docs as validate() would send (it only normalises).
        n_raw = raw_bulk(http, raw_index, generate(args.n), args.chunk)
        http.post(f"/{raw_index}/_refresh").raise_for_status()
        raw_s = time.perf_counter() - t
        print(f"\nbulk load of {args.n:,} docs (chunks of {args.chunk})")
        print(f"  ElasticIndex.upsert : {n_adapter / adapter_s:>9,.0f} docs/s  ({adapter_s:.1f} s)")
        print(f"  raw _bulk over HTTP : {n_raw / raw_s:>9,.0f} docs/s  ({raw_s:.1f} s)")

        import tempfile

        api = ApiServer(args.url, ix.alias, Path(tempfile.mkdtemp(prefix="bench-api-")))
        api_http = httpx.Client(base_url=api.url, timeout=120)
        tokens = {None: api.token()}
        rows = []
        api_rows = []
        for name, req in QUERIES.items():
            total = ix.search(req).total
            a = timed(lambda req=req: ix.search(req), args.runs)
            body = raw_body(req)
            r = timed(lambda body=body: http.post(f"/{raw_index}/_search", json=body)
                      .raise_for_status(), args.runs)  # fmt: skip
            scope = tuple(req.scope_numbers) if req.scope_numbers is not None else None
            if scope not in tokens:
                tokens[scope] = api.token(list(scope) if scope else None)
            headers = {"Authorization": f"Bearer {tokens[scope]}"}
            params = api_params(req)
            got = api_http.get("/v1/search", params=params, headers=headers)
            got.raise_for_status()
            assert got.json()["total"] == total, (name, got.json()["total"], total)
            # API and raw on the same index, alternating, for the ratio.
            h, r_same = timed_pair(
                lambda p=params, hd=headers: api_http.get("/v1/search", params=p, headers=hd)
                .raise_for_status(),
                lambda body=body: http.post(f"/{ix.alias}/_search", json=body).raise_for_status(),
                args.runs,
            )  # fmt: skip
            rows.append((name, total, a, r))
            api_rows.append((name, total, h, r_same))

        # A deep page: walk the cursor, then time fetching the page after it.
        req = SearchRequest(q="payment OR pago OR pagamento", size=20)
        cursor = None
        for _ in range(args.deep_pages):
            cursor = ix.search(SearchRequest(**{**_fields(req), "cursor": cursor})).next_cursor
        deep = SearchRequest(**{**_fields(req), "cursor": cursor})
        state = decode_cursor(cursor or "", deep)
        body = raw_body(deep) | {"pit": {"id": state["pit"], "keep_alive": "5m"},
                                 "search_after": state["sa"]}  # fmt: skip
        a = timed(lambda: ix.search(deep), args.runs)
        r = timed(lambda: http.post("/_search", json=body).raise_for_status(), args.runs)
        rows.append((f"cursor page {args.deep_pages + 1}", ix.search(deep).total, a, r))

        # The deep cursor page through the API: walk the API's own cursor, then time the
        # page after it against the same point-in-time page sent straight to Elasticsearch.
        req = SearchRequest(q="payment OR pago OR pagamento", size=20)
        params = api_params(req)
        headers = {"Authorization": f"Bearer {tokens[None]}"}
        api_cursor: str | None = None
        for _ in range(args.deep_pages):
            page = api_http.get("/v1/search", params=params | ({"cursor": api_cursor}
                                if api_cursor else {}), headers=headers)  # fmt: skip
            page.raise_for_status()
            api_cursor = page.json()["next_cursor"]
        assert api_cursor, "the deep walk ran out of pages"
        deep = SearchRequest(**{**_fields(req), "cursor": api_cursor})
        state = decode_cursor(api_cursor, deep)
        body = raw_body(deep) | {"pit": {"id": state["pit"], "keep_alive": "5m"},
                                 "search_after": state["sa"]}  # fmt: skip
        h, r_same = timed_pair(
            lambda: api_http.get("/v1/search", params=params | {"cursor": api_cursor},
                                 headers=headers).raise_for_status(),
            lambda: http.post("/_search", json=body).raise_for_status(),
            args.runs,
        )  # fmt: skip
        api_rows.append((f"cursor page {args.deep_pages + 1}", ix.search(deep).total, h, r_same))

        print(f"\nquery mix, {args.runs} runs each (ms)")
        print(
            f"  {'query':<22}{'total':>10}  {'adapter p50':>11} {'p95':>7}"
            f"  {'raw p50':>8} {'p95':>7}"
        )
        for name, total, a, r in rows:
            print(f"  {name:<22}{total:>10,}  {pct(a, .5):>11.1f} {pct(a, .95):>7.1f}  "
                  f"{pct(r, .5):>8.1f} {pct(r, .95):>7.1f}")  # fmt: skip
        print(
            f"  (mean of adapter p50s: {statistics.mean(pct(a, 0.5) for _, _, a, _ in rows):.1f})"
        )
        print(
            f"\nthrough the API (GET /v1/search, uvicorn on loopback), {args.runs} runs each (ms)"
        )
        print(f"  {'query':<22}{'total':>10}  {'api p50':>8} {'p95':>7}  {'raw p50':>8} {'p95':>7}"
              f"  {'p95 ratio':>9}")  # fmt: skip
        worst = 0.0
        for name, total, h, r in api_rows:
            ratio = pct(h, 0.95) / max(pct(r, 0.95), 1e-9)
            worst = max(worst, ratio)
            print(f"  {name:<22}{total:>10,}  {pct(h, .5):>8.1f} {pct(h, .95):>7.1f}  "
                  f"{pct(r, .5):>8.1f} {pct(r, .95):>7.1f}  {ratio:>9.2f}")  # fmt: skip
        all_api = [x for _, _, h, _ in api_rows for x in h]
        all_raw = [x for _, _, _, r in api_rows for x in r]
        print(
            f"  all queries: api p50 {pct(all_api, 0.5):.1f} p95 {pct(all_api, 0.95):.1f}; "
            f"raw p50 {pct(all_raw, 0.5):.1f} p95 {pct(all_raw, 0.95):.1f}; "
            f"p95 ratio {pct(all_api, 0.95) / pct(all_raw, 0.95):.2f} (worst query {worst:.2f})"
        )
        api_http.close()
        api.stop()
    finally:
        for name in ix.current_indices():
            ix.client.indices.delete(index=name)
        http.delete(f"/{raw_index}")
        http.close()


def _fields(req: SearchRequest) -> dict[str, Any]:
    return {f: getattr(req, f) for f in req.__dataclass_fields__}


if __name__ == "__main__":
    main()
