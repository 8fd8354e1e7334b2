"""The union-find of subjects (``archiver.subjects.identity``) on the embedded state store:
convergence whatever the order, the canonical id, crash-safe merge logging, and the
consent keywords of taps and system notices."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from archiver.ingest.consent import consent_records_for
from archiver.ingest.outbound import _contact
from archiver.keyspace import MERGED_PREFIX
from archiver.records.pseudonym import Pseudonymizer
from archiver.store.state_sqlite import SqliteStateStore
from archiver.subjects.identity import Identities, person_subjects
from archiver.whatsapp import parse_delivery

PSEUDO = Pseudonymizer.from_setting("k" * 64)
BIZ = "106"
LINKS = {"phone": ["wa:1650"], "bsuid": ["bsuid:US.1"], "both": ["wa:1650", "bsuid:US.1"]}


def link(ids: Identities, aliases: list[str], by: str = "batch") -> str:
    root, _ = ids.link(PSEUDO, BIZ, aliases, default=PSEUDO.subject(BIZ, aliases[0]), by=by)
    return root


@pytest.mark.parametrize("order", list(itertools.permutations(LINKS)))
def test_every_order_ends_in_one_person(tmp_path: Path, order: tuple[str, ...]) -> None:
    state = SqliteStateStore(tmp_path / "s.db")
    ids = Identities(state)
    roots = [link(ids, LINKS[name], by=name) for name in order]
    root = Identities(state).resolve(PSEUDO, BIZ, ["wa:1650"])
    assert root == Identities(state).resolve(PSEUDO, BIZ, ["bsuid:US.1"])
    assert roots[-1] == root
    members = person_subjects(state, root)
    assert members[0] == root == min(members)  # the smallest id is canonical
    assert set(members) >= set(roots)


def test_merges_chain_and_point_only_downwards(tmp_path: Path) -> None:
    state = SqliteStateStore(tmp_path / "s.db")
    ids = Identities(state)
    subjects = [link(ids, [f"wa:{n}"]) for n in range(6)]
    assert len(set(subjects)) == 6
    for a, b in [(0, 1), (2, 3), (4, 5), (1, 3), (5, 2)]:
        link(ids, [f"wa:{a}", f"wa:{b}"])
    root = min(subjects)
    assert {Identities(state).find(s) for s in subjects} == {root}
    assert person_subjects(state, subjects[3]) == [root, *sorted(set(subjects) - {root})]
    merged = [key[len(MERGED_PREFIX) :] for key in state.list(MERGED_PREFIX)]
    assert len(merged) == 5  # six subjects, one person
    for subject in merged:
        pointer = Identities(state).pointer(subject)
        assert pointer is not None and pointer["into"] < subject  # never a cycle


def test_a_retry_of_the_merging_batch_gets_its_merges_again(tmp_path: Path) -> None:
    """A crash after the pointer and before the batch's entries were saved: the retry
    finds the pointer it wrote and logs the same merge (same time, same bytes)."""
    state = SqliteStateStore(tmp_path / "s.db")
    ids = Identities(state)
    link(ids, ["wa:1650"], by="b1")
    link(ids, ["bsuid:US.1"], by="b2")
    _, first = ids.link(PSEUDO, BIZ, LINKS["both"], default="s_x", by="b3")
    assert len(first) == 1
    _, again = Identities(state).link(PSEUDO, BIZ, LINKS["both"], default="s_x", by="b3")
    assert again == first
    _, other = Identities(state).link(PSEUDO, BIZ, LINKS["both"], default="s_x", by="b4")
    assert other == []  # someone else's merge is not theirs to log


def test_concurrent_registration_of_one_alias_merges(tmp_path: Path) -> None:
    """Two writers register one alias to different subjects: the CAS loser merges."""
    state = SqliteStateStore(tmp_path / "s.db")

    class Late(Identities):
        """Read the registry just before the other writer registered the alias."""

        def alias_subject(self, pseudo: Pseudonymizer, business: str, alias: str) -> str | None:
            return None if alias == "bsuid:US.1" else super().alias_subject(pseudo, business, alias)

    link(Identities(state), ["wa:1650", "bsuid:US.1"])
    link(Late(state), ["wa:999", "bsuid:US.1"])
    ids = Identities(state)
    assert ids.find(PSEUDO.subject(BIZ, "wa:999")) == ids.find(PSEUDO.subject(BIZ, "wa:1650"))
    assert len(person_subjects(state, PSEUDO.subject(BIZ, "wa:999"))) == 2


def test_a_request_names_one_id_only() -> None:
    """The send proxy's fallback contact is the caller's word: never two ids."""
    both = {"to": "16505551234", "recipient": "US.1"}
    assert _contact(both, None).user_id is None  # type: ignore[union-attr]
    assert _contact({"recipient": "US.1"}, None).user_id == "US.1"  # type: ignore[union-attr]
    meta = _contact(both, {"wa_id": "16505551234", "user_id": "US.1"})
    assert meta is not None and (meta.wa_id, meta.user_id) == ("16505551234", "US.1")


def _consent(body: bytes) -> list[str]:
    keywords = {"stop": frozenset({"stop", "unsubscribe"}), "start": frozenset({"start"})}
    out = []
    for event in parse_delivery(body).events:
        header = {"record_id": "r_x", "subject": "s_x", "business": {"phone_number_id": BIZ}}
        for consent_header, _ in consent_records_for(event, header, keywords.__getitem__, PSEUDO):
            out.append(consent_header["consent"]["state"])
    return out


def test_button_tap_and_system_notice_make_consent(shared: Path) -> None:
    fixtures = shared / "fixtures" / "whatsapp"
    assert _consent((fixtures / "messages_button.json").read_bytes()) == ["opt_out"]
    system = (fixtures / "messages_system.json").read_text()
    assert _consent(system.encode()) == []  # a number change is no consent change
    notice = system.replace(
        '"user_changed_number"', '"user_preference_changed", "marketing": "stop"'
    )
    assert _consent(notice.encode()) == ["opt_out"]


class _CountingState(SqliteStateStore):
    """The real SQLite store, counting reads of merge pointers."""

    pointer_reads = 0

    def get(self, key: str):  # type: ignore[no-untyped-def]
        if key.startswith(MERGED_PREFIX):
            self.pointer_reads += 1
        return super().get(key)


def test_a_session_trusts_earlier_no_pointer_answers_until_a_merge(tmp_path: Path) -> None:
    """Issue 10: a processor's batch no longer reads the merge pointer of every subject it
    met before; another process's merge (``subjects/epoch``) makes it read them again."""
    state = _CountingState(tmp_path / "s.db")
    here = Identities(state)  # one processing process
    phone, bsuid = (link(here.session(), [a]) for a in ("wa:1650", "bsuid:US.1"))
    assert phone != bsuid
    reads = state.pointer_reads
    session = here.session()
    assert session.find(phone) == phone and session.find(bsuid) == bsuid
    assert state.pointer_reads == reads  # remembered across sessions: no read

    elsewhere = Identities(SqliteStateStore(tmp_path / "s.db"))  # another process
    root = link(elsewhere.session(), ["wa:1650", "bsuid:US.1"], by="other-batch")
    assert root == min(phone, bsuid)
    after = here.session()
    assert after.find(phone) == after.find(bsuid) == root  # the merge is seen
    assert state.pointer_reads > reads


def test_a_retry_of_a_merging_batch_raises_the_epoch_again(tmp_path: Path) -> None:
    """A crash between a merge pointer and its epoch raise: the retry, which finds the
    pointer written by its batch, raises it, so other processes read pointers again."""
    state = SqliteStateStore(tmp_path / "s.db")
    here = Identities(state)
    phone, bsuid = (link(here.session(), [a]) for a in ("wa:1650", "bsuid:US.1"))
    high = max(phone, bsuid)
    assert here.session().find(high) == high  # remembered: no pointer
    # The crashed attempt: the pointer written, the epoch not raised.
    epoch = state.get("subjects/epoch")
    elsewhere = Identities(SqliteStateStore(tmp_path / "s.db"))
    crashed = elsewhere.session()
    crashed._raise_epoch = lambda: None  # type: ignore[method-assign]
    link(crashed, ["wa:1650", "bsuid:US.1"], by="crashed")
    assert state.get("subjects/epoch") == epoch
    assert here.session().find(high) == high  # stale, as any concurrent reader could be
    link(elsewhere.session(), ["wa:1650", "bsuid:US.1"], by="crashed")  # the retry
    assert here.session().find(high) == min(phone, bsuid)
