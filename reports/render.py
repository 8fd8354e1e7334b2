"""Report → HTML for weasyprint (pure code: jinja2 from package templates, autoescaped).

Every figure on the pages is printed through ``fig(path)``, which reads it from the twin's
own dict and tags it ``<span class="fig" data-k="path">``; so the pages show exactly the
twin's numbers, and a test can check that every leaf of the twin appears. Paths join keys
and list indexes with ``/`` (``inventory/by_origin/customer``, ``findings/0/record_ids/2``).

The page header and footer (CSS paged media) print the twin's SHA-256 and the checkpoint
(tree size, root hash) on every page. Generation time and report id are page furniture
only: they are not in the twin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from reports import charts
from reports.compute import Report
from reports.errors import ReportsError
from reports.facts import Regulation
from reports.twin import twin_dict

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REPORT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")

TEMPLATES: Mapping[Regulation, str] = {
    Regulation.GDPR: "gdpr.html.j2",
    Regulation.HIPAA: "hipaa.html.j2",
    Regulation.FINRA: "finra.html.j2",
}

ORIGIN_LABELS: Mapping[str, str] = {
    "customer": "Customer",
    "business_app": "Business App echo",
    "business_api": "API",
    "history": "History sync",
    "meta": "Meta notices",
}

CONSENT_LABELS: Mapping[str, str] = {"opt_in": "Opt-ins", "opt_out": "Opt-outs"}


class RenderError(ReportsError):
    code = "report_render_failed"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,  # every template, whatever its suffix
        undefined=jinja2.StrictUndefined,  # a misspelt figure fails, never prints ""
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENV: jinja2.Environment | None = None


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:  # built on first use, not at import
        _ENV = _environment()
    return _ENV


def lookup(twin: Mapping[str, Any], path: str) -> Any:
    """The twin's value at ``path``; raises ``RenderError`` for a path it lacks."""
    node: Any = twin
    for part in path.split("/"):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise RenderError(f"the twin has no figure {path!r}") from exc
    return node


def render_html(report: Report, twin_sha256: str, *, generated_at: datetime | None = None,
                report_id: str | None = None) -> str:
    """The report's HTML. ``twin_sha256`` is ``twin.twin_sha256(twin.twin_bytes(report))``;
    it is printed, not recomputed, so the caller hashes exactly the bytes it embeds."""
    if not _HEX64.match(twin_sha256):
        raise RenderError("twin_sha256 must be 64 lowercase hex digits")
    if report_id is not None and not _REPORT_ID.match(report_id):
        raise RenderError("report_id must be 1-80 of [A-Za-z0-9_.-]")
    twin = twin_dict(report)

    def fig(path: str) -> Markup:
        value = lookup(twin, path)
        if isinstance(value, dict | list):
            raise RenderError(f"{path!r} is not a single figure")
        return Markup('<span class="fig" data-k="{}">{}</span>').format(path, _text(value))

    def at(path: str) -> Any:
        return lookup(twin, path)

    daily = twin["daily"]
    volume_svg = Markup(charts.stacked_bars(  # noqa: S704 - charts escape their own labels
        "Records per day by origin", daily["days"], daily["records_by_origin"], ORIGIN_LABELS))
    consent_svg = Markup(charts.lines(  # noqa: S704 - charts escape their own labels
        "Consent events per day", daily["days"], daily["consent"], CONSENT_LABELS))
    template = _env().get_template(TEMPLATES[report.regulation])
    return template.render(
        t=twin,
        fig=fig,
        at=at,
        twin_sha256=twin_sha256,
        generated_at=_iso(generated_at) if generated_at else "",
        report_id=report_id or "",
        origin_labels=ORIGIN_LABELS,
        consent_labels=CONSENT_LABELS,
        volume_svg=volume_svg,
        consent_svg=consent_svg,
    )


def _text(value: Any) -> Markup:
    if value is None:
        return Markup("")
    if isinstance(value, bool):
        return escape("yes" if value else "no")
    return escape(str(value))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
