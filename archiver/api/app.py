"""The FastAPI app factory. No work happens at import time: ``create_app`` only wires
routes; the runtime (stores, index, workers) is opened by the lifespan, or handed in
by tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from archiver import __version__
from archiver.api.errors import install_error_handlers
from archiver.api.gc_tuning import serving_gc
from archiver.api.limits import BodyLimitMiddleware
from archiver.api.routes import audit as audit_routes
from archiver.api.routes import cases as cases_routes
from archiver.api.routes import coexistence as coexistence_routes
from archiver.api.routes import consent as consent_routes
from archiver.api.routes import conversations, health, me, metrics, webhook
from archiver.api.routes import erasure as erasure_routes
from archiver.api.routes import exports as exports_routes
from archiver.api.routes import holds as holds_routes
from archiver.api.routes import log as log_routes
from archiver.api.routes import messages as messages_routes
from archiver.api.routes import reports as reports_routes
from archiver.api.routes import search as search_routes
from archiver.logs import configure_logging
from archiver.runtime import Runtime
from archiver.settings import Settings, get_settings

PUBLIC_PATHS = frozenset(
    {
        "/",
        "/healthz",
        "/readyz",
        "/webhooks/whatsapp",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/metrics",
    }
)


def create_app(
    settings: Settings | None = None,
    runtime_factory: Callable[[Settings], Runtime] | None = None,
) -> FastAPI:
    """Build the app. ``runtime_factory`` defaults to ``Runtime.open``."""
    resolved = settings or get_settings()
    factory = runtime_factory or Runtime.open

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(resolved.log_level)
        runtime = factory(resolved)
        app.state.runtime = runtime
        await runtime.start()  # with inline workers: report and export job runners too
        try:
            with serving_gc(resolved.gc_tuning):
                yield
        finally:
            await runtime.stop()
            runtime.close()

    # Swagger UI and ReDoc from assets shipped in the package (fastapi-offline, MIT): the
    # docs work offline and load nothing from outside (no CDN, favicon or web fonts).
    app = FastAPIOffline(
        title="WhatsApp Business compliance archive",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=resolved.max_body_bytes)
    app.include_router(health.router)
    app.include_router(webhook.router)
    app.add_route("/webhooks/whatsapp", webhook.receive_delivery, methods=["POST"])
    app.include_router(me.router)
    app.include_router(log_routes.router)  # /v1/log/*, /v1/records/{id}/proof
    app.include_router(messages_routes.router)  # /v1/messages (send proxy)
    app.include_router(consent_routes.router)  # /v1/consent
    app.include_router(coexistence_routes.router)  # /v1/coexistence/{phone_number_id}
    app.include_router(search_routes.router)  # /v1/search
    app.include_router(conversations.router)  # /v1/conversations/{conversation}
    app.include_router(audit_routes.router)  # /v1/audit
    app.include_router(metrics.router)  # /metrics (public)
    app.include_router(holds_routes.router)  # /v1/holds, /v1/disposition/reviews
    app.include_router(erasure_routes.router)  # /v1/erasure
    app.include_router(cases_routes.router)  # /v1/cases
    app.include_router(reports_routes.router)  # /v1/reports
    app.include_router(exports_routes.router)  # /v1/cases/{id}/exports, /v1/exports
    return app
