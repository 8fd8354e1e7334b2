"""Readable PDF transcripts of conversations, for review and for courts.

A transcript lays a conversation out as a chat: the contact's messages on the left,
the business's on the right, each business message labelled with where it was sent
from (the phone app, the Cloud API, or a history sync), every time shown in the
export's time zone with its offset. Revoked messages stay visible and say so; a
record whose subject was erased shows only the erasure's tombstone.

Every page carries its Bates number (prefix + zero-padded number) in the footer. The
caller allocates the numbers: page numbers do not change the layout (the number has
a fixed width), so ``count_pages`` first and ``render_transcript`` with the
allocated start give the same page count.

The same renderer serves a data subject's access request (GDPR Art. 15): one PDF
with a section per conversation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from weasyprint import HTML

_TEMPLATES = Path(__file__).with_name("templates")


class Origin(StrEnum):
    """Where a message came from, as a reader needs to know it."""

    CONTACT = "contact"
    BUSINESS_APP = "business_app"  # typed on the phone (Coexistence echo)
    CLOUD_API = "cloud_api"
    HISTORY_SYNC = "history_sync"
    UNKNOWN = "unknown"


ORIGIN_LABELS: dict[Origin, str] = {
    Origin.CONTACT: "",
    Origin.BUSINESS_APP: "sent from the WhatsApp Business app",
    Origin.CLOUD_API: "sent through the Cloud API",
    Origin.HISTORY_SYNC: "imported by history sync",
    Origin.UNKNOWN: "origin unknown",
}


@dataclass(frozen=True, slots=True)
class Edit:
    at: datetime
    previous: str
    new: str


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What stands in for content whose subject was crypto-shredded."""

    erased_at: datetime
    request_id: str


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    record_id: str
    sent_at: datetime  # timezone-aware
    sender: str  # display name, or the pseudonym when erased
    from_business: bool
    origin: Origin
    text: str = ""
    attachments: tuple[str, ...] = ()  # file names as exported
    edits: tuple[Edit, ...] = ()
    reactions: tuple[str, ...] = ()  # "👍 by Alice at 10:02"
    status: str = ""  # "read 10:05", "delivered 10:03"
    revoked_at: datetime | None = None
    tombstone: Tombstone | None = None


@dataclass(frozen=True, slots=True)
class TranscriptSection:
    """One conversation."""

    title: str  # e.g. "Acme Ltd (+1 555…) with Alice"
    messages: Sequence[TranscriptMessage]


@dataclass(frozen=True, slots=True)
class TranscriptHeading:
    title: str  # "Transcript" or "Subject access: all records of …"
    matter: str = ""  # case name and matter number
    note: str = ""  # anything the reader must know first
    generated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Bates:
    prefix: str
    start: int
    width: int = 8

    def label(self, number: int) -> str:
        return f"{self.prefix}{number:0{self.width}d}"


@dataclass(frozen=True, slots=True)
class TranscriptPdf:
    data: bytes
    pages: int
    bates: Bates | None = None
    first_label: str = field(default="")
    last_label: str = field(default="")


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )


def _css_string(text: str) -> str:
    """A CSS string literal; prefixes are operator input, so escape what CSS needs."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\a ")
        .replace("<", "\\3c ")  # never close the <style> element early
        .replace(">", "\\3e ")
    )
    return f'"{escaped}"'


def _when(t: datetime, tz: ZoneInfo) -> str:
    local = t.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")


def _html(
    heading: TranscriptHeading,
    sections: Iterable[TranscriptSection],
    tz: ZoneInfo,
    bates: Bates | None,
) -> str:
    template = _env().get_template("transcript.html.j2")
    return template.render(
        heading=heading,
        sections=list(sections),
        tz_name=str(tz),
        title_css=_css_string(heading.title),
        tz_css=_css_string(f"Times in {tz}"),
        when=lambda t: _when(t, tz),
        origin_label=lambda o: ORIGIN_LABELS[o],
        bates_css=(
            None
            if bates is None
            else {
                "prefix": _css_string(bates.prefix),
                "start": bates.start,
                "width": bates.width,
            }
        ),
        generated=_when(heading.generated_at, tz) if heading.generated_at else "",
    )


def count_pages(
    heading: TranscriptHeading,
    sections: Sequence[TranscriptSection],
    *,
    tz: ZoneInfo,
    bates_width: int = 8,
) -> int:
    """Pages the transcript will take; the same with any Bates start of this width."""
    html = _html(heading, sections, tz, Bates("", 0, bates_width))
    return len(HTML(string=html).render().pages)


def render_transcript(
    heading: TranscriptHeading,
    sections: Sequence[TranscriptSection],
    *,
    tz: ZoneInfo,
    bates: Bates | None = None,
) -> TranscriptPdf:
    """The transcript as PDF bytes, with each page's Bates number in its footer."""
    document = HTML(string=_html(heading, sections, tz, bates)).render()
    pages = len(document.pages)
    data = document.write_pdf()
    if bates is None:
        return TranscriptPdf(data=data, pages=pages)
    return TranscriptPdf(
        data=data,
        pages=pages,
        bates=bates,
        first_label=bates.label(bates.start),
        last_label=bates.label(bates.start + pages - 1),
    )
