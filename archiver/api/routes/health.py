"""Liveness and readiness. Both are public (load balancers and orchestrators call them)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from archiver.api.deps import get_runtime
from archiver.errors import ArchiverError
from search.errors import SearchError

router = APIRouter(tags=["health"])


_HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wa-archiver</title></head>
<body><h1>wa-archiver</h1>
<p>A compliance archive for WhatsApp Business. This service takes Meta's webhooks at
<code>/webhooks/whatsapp</code> and answers API calls with a bearer token.</p>
<ul>
<li><a href="docs">API documentation</a> (Swagger UI), or <a href="redoc">ReDoc</a></li>
<li><a href="healthz">/healthz</a> and <a href="readyz">/readyz</a>: liveness and readiness</li>
</ul></body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def home() -> HTMLResponse:
    """A page for whoever opens the service in a browser: where the API docs are."""
    return HTMLResponse(_HOME)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up. Says nothing about the backends."""
    return {"status": "ok"}


def _probe(ping: Any, name: str, kind: str) -> dict[str, Any]:
    try:
        ping()
    except (ArchiverError, SearchError) as exc:
        return {"name": name, "kind": kind, "ok": False, "error": getattr(exc, "code", "error")}
    return {"name": name, "kind": kind, "ok": True}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Each backend reachable? 503 naming every backend that is down."""
    runtime = get_runtime(request)
    probes = {
        "object_store": (runtime.objects.ping, runtime.objects.name),
        "state_store": (runtime.state.ping, runtime.state.name),
        "index": (runtime.index.ping, runtime.index.name),
    }
    results = await asyncio.gather(
        *(
            asyncio.to_thread(_probe, ping, name, backend)
            for backend, (ping, name) in probes.items()
        )
    )
    backends = {r["kind"]: {k: v for k, v in r.items() if k != "kind"} for r in results}
    down = sorted(kind for kind, r in backends.items() if not r["ok"])
    body: dict[str, Any] = {"status": "ready" if not down else "unavailable", "backends": backends}
    body.update(runtime.readiness_extras())
    if down:
        body["error"] = {
            "code": "backend_unavailable",
            "message": "backend(s) down: " + ", ".join(down),
            "details": {"down": down},
        }
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
