"""Which identities of a contact name the same data subject (pure).

A contact can be named by a phone-based ``wa_id``, a business-scoped ``user_id`` (BSUID),
a ``parent_user_id``, or change number (``system`` messages ``user_changed_number`` and
``user_changed_user_id``). The subject is per business number: the same person writing
to two businesses is two subjects, as each business is its own controller.

The *primary* alias decides the id of a new subject deterministically; the aliases a
Meta payload names together are linked to one person in working state, merging subjects
that were seen apart (``archiver.subjects.identity``), so the answer converges whatever
the arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass

from archiver.whatsapp.events import ContactRef


@dataclass(frozen=True, slots=True)
class Aliases:
    primary: str | None
    others: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return ((self.primary,) if self.primary else ()) + self.others


def normalize_number(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def aliases_of(contact: ContactRef | None) -> Aliases:
    """Aliases in order of strength: wa_id, then user_id, then parent_user_id."""
    if contact is None:
        return Aliases(None, ())
    found: list[str] = []
    if contact.wa_id and normalize_number(contact.wa_id):
        found.append("wa:" + normalize_number(contact.wa_id))
    if contact.user_id:
        found.append("bsuid:" + contact.user_id)
    if contact.parent_user_id:
        found.append("parent:" + contact.parent_user_id)
    if not found:
        if contact.username:
            found.append("username:" + contact.username.casefold())
        else:
            return Aliases(None, ())
    return Aliases(found[0], tuple(found[1:]))


def contact_aliases(contact: str) -> list[str]:
    """The alias forms a caller's contact string may take (:func:`aliases_of`):
    a phone-based wa_id (digits, ``+`` and separators allowed) or a business-scoped id."""
    text = contact.strip()
    digits = normalize_number(text)
    if digits and all(ch.isdigit() or ch in "+ ()-." for ch in text):
        return ["wa:" + digits]
    return ["bsuid:" + text, "parent:" + text, "username:" + text.casefold()]
