"""Consent events derived from what customers send (pure).

Automatic sources besides ``POST /v1/consent``:

* an inbound customer reply that is exactly a configured keyword (``STOP``,
  ``UNSUBSCRIBE``, ``START``, …, per language, case-insensitive, surrounding
  punctuation ignored): a ``text`` body, a quick-reply ``button`` tap (its ``payload``
  or its ``text``), an ``interactive`` ``button_reply`` / ``list_reply`` (its ``id`` or
  its ``title``);
* ``user_preferences`` webhooks (marketing messages ``stop`` / ``resume`` / ``signup``);
* the older ``system`` message of type ``user_preference_changed`` (its ``marketing``
  value ``stop`` / ``resume``; without one, the word ``stop`` or ``resume`` in its body).

Each becomes a record of kind ``consent`` next to the record of the event itself, with
a deterministic id, so a re-delivered ``STOP`` is one consent change, not two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from typing import Any

from archiver.records.pseudonym import Pseudonymizer
from archiver.whatsapp import Event, EventKind

MARKETING = "marketing"


class ConsentStatus(StrEnum):
    """A contact's consent for one purpose (stored in consent records: values never change)."""

    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    UNKNOWN = "unknown"  # answered only: no change logged yet


_PREFERENCE_STATES = {
    "stop": ConsentStatus.OPT_OUT, "resume": ConsentStatus.OPT_IN, "signup": ConsentStatus.OPT_IN,
}
# Customer replies whose words are the customer's choice (not a system notice).
_REPLY_TYPES = frozenset({"text", "button", "interactive"})


def keyword_state(
    text: str, keywords: Callable[[str], frozenset[str]]
) -> ConsentStatus | None:
    word = text.strip().strip(".!¡¿?\"'").casefold()
    if word in keywords("stop"):
        return ConsentStatus.OPT_OUT
    if word in keywords("start"):
        return ConsentStatus.OPT_IN
    return None


def consent_records_for(
    event: Event,
    header: Mapping[str, Any],
    keywords: Callable[[str], frozenset[str]],
    pseudo: Pseudonymizer,
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    state: ConsentStatus | None = None
    source = ""
    purpose = MARKETING
    evidence = ""
    if event.kind is EventKind.MESSAGE and event.message_type in _REPLY_TYPES:
        # A tap's payload / reply id is the business's own wording of the choice; its
        # visible text is the customer's. Either naming a keyword counts.
        reply_id = getattr(event, "reply_id", None)
        for said in (reply_id, *event.texts):
            if isinstance(said, str) and said:
                state = keyword_state(said, keywords)
                if state is not None:
                    source = "keyword" if event.message_type == "text" else "reply_button"
                    evidence = said
                    break
    elif event.kind is EventKind.MESSAGE and event.message_type == "system":
        state, evidence = _system_preference(event)
        source = "system"
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


def _system_preference(event: Event) -> tuple[ConsentStatus | None, str]:
    """The state of an older ``user_preference_changed`` system message, and its evidence."""
    if getattr(event, "system_type", None) != "user_preference_changed":
        return None, ""
    value = str(getattr(event, "system_preference", "") or "").casefold()
    if value in _PREFERENCE_STATES:
        return _PREFERENCE_STATES[value], f"user_preference_changed:{value}"
    words = set(" ".join(event.texts).casefold().replace(".", " ").split())
    for word in ("stop", "resume"):
        if word in words:
            return _PREFERENCE_STATES[word], f"user_preference_changed:{word}"
    return None, ""
