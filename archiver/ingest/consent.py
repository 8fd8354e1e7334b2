"""Consent events derived from what customers send (pure).

Two automatic sources besides ``POST /v1/consent``:

* inbound text that is exactly a configured keyword (``STOP``, ``UNSUBSCRIBE``,
  ``START``, …, per language, case-insensitive, surrounding punctuation ignored);
* ``user_preferences`` webhooks (marketing messages stop / resume).

Each becomes a record of kind ``consent`` next to the record of the event itself, with
a deterministic id, so a re-delivered ``STOP`` is one consent change, not two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from archiver.records.pseudonym import Pseudonymizer
from archiver.whatsapp import Event, EventKind

MARKETING = "marketing"

_PREFERENCE_STATES = {"stop": "opt_out", "resume": "opt_in", "signup": "opt_in"}


def keyword_state(text: str, keywords: Callable[[str], frozenset[str]]) -> str | None:
    word = text.strip().strip(".!¡¿?\"'").casefold()
    if word in keywords("stop"):
        return "opt_out"
    if word in keywords("start"):
        return "opt_in"
    return None


def consent_records_for(
    event: Event,
    header: Mapping[str, Any],
    keywords: Callable[[str], frozenset[str]],
    pseudo: Pseudonymizer,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    state: str | None = None
    source = ""
    purpose = MARKETING
    evidence = ""
    if event.kind is EventKind.MESSAGE and event.message_type == "text" and event.texts:
        state = keyword_state(event.texts[0], keywords)
        source, evidence = "keyword", event.texts[0]
    elif event.kind is EventKind.USER_PREFERENCE:
        value = str(getattr(event, "value", "") or "").casefold()
        state = _PREFERENCE_STATES.get(value)
        category = str(getattr(event, "category", "") or "")
        purpose = "marketing" if "marketing" in category or not category else category
        source, evidence = "user_preferences", f"{category}:{value}"
    if state is None or header.get("subject") is None:
        return
    business = header["business"]["phone_number_id"] or "unknown"
    consent_header = {
        **{k: v for k, v in header.items() if k not in ("record_id", "kind", "refs", "status")},
        "record_id": pseudo.record_id(business, "consent:" + event.dedup_key),
        "kind": "consent",
        "consent": {"purpose": purpose, "state": state, "channel": "whatsapp", "source": source},
        "derived_from": header["record_id"],
    }
    content = {"evidence": evidence, "actor": "customer"}
    yield consent_header, content
