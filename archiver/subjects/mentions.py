"""Who a delivery names, when the parser could not tie it to a contact (pure, bounded).

A delivery kept whole as an ``unknown`` event (an unknown field, a body that is not JSON,
too deep, bad UTF-8) or as an ``unprocessable`` record still quotes the people it names.
Erasure must reach it with them, so the processor asks this module which contact ids and
which business number the body mentions. The answer is only ever used to *look up*
subjects (or give an id the pseudonym a message of theirs would get); it never links
identities: a hostile body must not merge two people.

Two bounded passes, unioned: a walk of the parsed JSON (depth and node limits; catches
escaped strings) and a regex scan of the raw text (catches bodies that are not JSON or
nest too deep to parse).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from archiver.whatsapp.events import ContactRef

# Keys whose string value names a WhatsApp user in Meta's payloads (and in look-alikes).
WA_KEYS = frozenset({"wa_id", "from", "to", "recipient_id"})
USER_KEYS = frozenset({"user_id", "parent_user_id"})
BUSINESS_KEY = "phone_number_id"
MAX_DEPTH = 128  # deeper than the parser's limit: a too-deep body is still walked a bit
MAX_NODES = 50_000
MAX_SCAN = 1 << 20  # bytes of raw text the regex pass reads
MAX_IDS = 64  # a body naming more people than this names them all the same: cap the work

_ID = re.compile(r"^\+?[A-Za-z0-9._:-]{3,100}$")
_PAIR = re.compile(
    r'"(wa_id|from|to|recipient_id|user_id|parent_user_id|phone_number_id|display_phone_number)"\s*:\s*"([^"\\]{3,100})"'
)


@dataclass(frozen=True, slots=True)
class Named:
    business: str | None  # the one phone_number_id the body names; None: none or several
    contacts: tuple[ContactRef, ...]


def named_contacts(body: bytes) -> Named:
    """The contacts and the business number ``body`` names (each contact one id)."""
    pairs: list[tuple[str, str]] = []
    text = body[:MAX_SCAN].decode("utf-8", errors="replace")
    pairs += [(m.group(1), m.group(2)) for m in _PAIR.finditer(text)]
    try:
        doc: Any = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        doc = None
    if doc is not None:
        pairs += _walk(doc)
    business = sorted({v for k, v in pairs if k == BUSINESS_KEY and v.isdigit()})
    contacts: dict[tuple[str, str], ContactRef] = {}
    for key, value in pairs:
        if len(contacts) >= MAX_IDS or not _ID.match(value):
            continue
        if key in WA_KEYS and value.lstrip("+").isdigit():
            contacts.setdefault(("wa", value.lstrip("+")), ContactRef(wa_id=value.lstrip("+")))
        elif key in USER_KEYS:
            contacts.setdefault(("user", value), ContactRef(user_id=value))
    # The business's own number appears as ``from``/``to`` of its sends: not a contact.
    own = {v for k, v in pairs if k == "display_phone_number"}
    kept = tuple(c for k, c in sorted(contacts.items()) if k[1] not in own)
    return Named(business[0] if len(business) == 1 else None, kept)


def _walk(doc: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    stack: list[tuple[Any, int]] = [(doc, 0)]
    seen = 0
    while stack and seen < MAX_NODES:
        node, depth = stack.pop()
        seen += 1
        if depth >= MAX_DEPTH:
            continue
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and isinstance(key, str):
                    out.append((key, value))
                elif isinstance(value, int) and not isinstance(value, bool):
                    out.append((str(key), str(value)))
                else:
                    stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
    return out
