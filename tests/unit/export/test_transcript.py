"""Transcript PDFs: chat layout, origins, time zone, tombstones and a Bates number on
every page, read back from the PDF with poppler's pdftotext (a real reader)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.export.transcript import (
    Bates,
    Edit,
    Origin,
    Tombstone,
    TranscriptHeading,
    TranscriptMessage,
    TranscriptSection,
    count_pages,
    render_transcript,
)

T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night Europe/Berlin moves to summer time
BERLIN = ZoneInfo("Europe/Berlin")


def _pdf_pages(data: bytes, tmp_path: Path) -> list[str]:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext (poppler-utils) is required; .ci/run installs it"
    path = tmp_path / "t.pdf"
    path.write_bytes(data)
    text = subprocess.run(
        [tool, "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


def _conversation(n: int) -> TranscriptSection:
    messages = []
    for i in range(n):
        business = i % 2 == 1
        messages.append(
            TranscriptMessage(
                record_id=f"rec-{i:05d}",
                sent_at=T0 + timedelta(minutes=20 * i),
                sender="Acme Support" if business else "Alice Example",
                from_business=business,
                origin=(Origin.BUSINESS_APP if i % 4 == 1 else Origin.CLOUD_API)
                if business
                else Origin.CONTACT,
                text=f"message number {i}",
            )
        )
    return TranscriptSection(title="Acme Support with Alice Example", messages=messages)


def test_every_page_carries_its_own_bates_number_in_sequence(tmp_path: Path) -> None:
    heading = TranscriptHeading(title="Transcript", matter="Doe v. Acme (2026-CV-17)")
    sections = [_conversation(120)]
    pages = count_pages(heading, sections, tz=BERLIN)
    assert pages >= 3, "the fixture must span several pages to test numbering"
    pdf = render_transcript(heading, sections, tz=BERLIN, bates=Bates("ACME", 41, 7))
    assert pdf.pages == pages
    assert (pdf.first_label, pdf.last_label) == ("ACME0000041", f"ACME{41 + pages - 1:07d}")
    texts = _pdf_pages(pdf.data, tmp_path)
    assert len(texts) == pages
    for number, text in enumerate(texts, start=41):
        labels = re.findall(r"ACME\d{7}", text)
        assert labels == [f"ACME{number:07d}"], (number, labels)


def test_origins_times_and_message_states_are_shown(tmp_path: Path) -> None:
    erased_at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    messages = [
        TranscriptMessage(
            record_id="r-contact",
            sent_at=T0,
            sender="Alice Example",
            from_business=False,
            origin=Origin.CONTACT,
            text="Hello, is my order shipped?",
        ),
        TranscriptMessage(
            record_id="r-app",
            sent_at=T0 + timedelta(hours=2),
            sender="Acme Support",
            from_business=True,
            origin=Origin.BUSINESS_APP,
            text="Yes, this morning.",
            edits=(Edit(T0 + timedelta(hours=2, minutes=1), "Yes, today.", "Yes, this morning."),),
        ),
        TranscriptMessage(
            record_id="r-api",
            sent_at=T0 + timedelta(hours=3),
            sender="Acme Support",
            from_business=True,
            origin=Origin.CLOUD_API,
            text="Your invoice is attached.",
            attachments=("invoice-0042.pdf",),
            status="read 2026-03-29 05:31",
        ),
        TranscriptMessage(
            record_id="r-sync",
            sent_at=T0 - timedelta(days=30),
            sender="Acme Support",
            from_business=True,
            origin=Origin.HISTORY_SYNC,
            text="Welcome to Acme!",
        ),
        TranscriptMessage(
            record_id="r-revoked",
            sent_at=T0 + timedelta(hours=4),
            sender="Alice Example",
            from_business=False,
            origin=Origin.CONTACT,
            text="wrong chat, sorry",
            revoked_at=T0 + timedelta(hours=4, minutes=2),
        ),
        TranscriptMessage(
            record_id="r-erased",
            sent_at=T0 + timedelta(hours=5),
            sender="subject 7f3a",
            from_business=False,
            origin=Origin.CONTACT,
            text="",
            tombstone=Tombstone(erased_at=erased_at, request_id="erq-123"),
        ),
    ]
    pdf = render_transcript(
        TranscriptHeading(title="Transcript"),
        [TranscriptSection("Acme with Alice", messages)],
        tz=BERLIN,
    )
    text = " ".join(" ".join(_pdf_pages(pdf.data, tmp_path)).split())
    assert "sent from the WhatsApp Business app" in text
    assert "sent through the Cloud API" in text
    assert "imported by history sync" in text
    # 00:30 UTC is 01:30 CET (+0100); 02:30 UTC is 04:30 CEST (+0200) after the change
    assert "2026-03-29 01:30:00 CET (UTC+0100)" in text
    assert "2026-03-29 04:30:00 CEST (UTC+0200)" in text
    assert "before: “Yes, today.”" in text
    assert "Attachment: invoice-0042.pdf" in text
    assert "Deleted for everyone by the sender" in text and "wrong chat, sorry" in text
    assert "erasure request erq-123" in text
    assert "record r-erased" in text


def test_a_tombstone_shows_no_content_even_if_some_was_passed(tmp_path: Path) -> None:
    message = TranscriptMessage(
        record_id="r1",
        sent_at=T0,
        sender="subject 7f3a",
        from_business=False,
        origin=Origin.CONTACT,
        text="SECRET-BODY",
        attachments=("SECRET-FILE.jpg",),
        tombstone=Tombstone(erased_at=T0, request_id="erq-9"),
    )
    pdf = render_transcript(
        TranscriptHeading(title="T"), [TranscriptSection("c", [message])], tz=ZoneInfo("UTC")
    )
    text = " ".join(_pdf_pages(pdf.data, tmp_path))
    assert "erq-9" in text
    assert "SECRET" not in text


def test_hostile_titles_and_prefixes_neither_break_the_page_nor_inject(tmp_path: Path) -> None:
    title = 'Case "X" </style><h1>INJECTED</h1> \\ end'
    message = TranscriptMessage(
        record_id="r1",
        sent_at=T0,
        sender="<b>Mallory</b>",
        from_business=False,
        origin=Origin.CONTACT,
        text="<script>alert(1)</script>",
    )
    pdf = render_transcript(
        TranscriptHeading(title=title),
        [TranscriptSection("c", [message])],
        tz=ZoneInfo("UTC"),
        bates=Bates('P"\\', 1, 4),
    )
    pages = _pdf_pages(pdf.data, tmp_path)
    assert len(pages) == 1
    text = pages[0]
    assert "<script>alert(1)</script>" in text  # shown as text, not markup
    assert "<b>Mallory</b>" in text
    assert 'P"\\0001' in text
    assert text.count("INJECTED") == 2  # the page header and the h1 title, both as text


def test_an_empty_conversation_says_so(tmp_path: Path) -> None:
    pdf = render_transcript(
        TranscriptHeading(title="T"),
        [_conversation(0)],
        tz=ZoneInfo("UTC"),
        bates=Bates("B", 1),
    )
    text = " ".join(_pdf_pages(pdf.data, tmp_path))
    assert "No records in scope." in text
    assert pdf.pages == 1 and pdf.first_label == pdf.last_label == "B00000001"
