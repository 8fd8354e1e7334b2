"""Seeded report facts: a clean archive week, and the same week with known violations.

Real names and customer phone numbers are planted in the two free-text fields the facts
allow (access query texts, erasure notes), so tests can prove they never leak.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta

from reports.facts import (
    AccessAction,
    AccessEvent,
    AccessFacts,
    CheckpointFact,
    CompletenessFacts,
    ComplianceFacts,
    ConsentEvent,
    ConsentKind,
    Consistency,
    Direction,
    DisposalFact,
    ErasureFact,
    ErasureStatus,
    HistoryPhase,
    HoldFact,
    IntegrityFacts,
    LockCheck,
    LockCheckMode,
    LockMode,
    LockObservation,
    MediaFact,
    MediaState,
    NumberWatch,
    Origin,
    Period,
    PolicyInForce,
    RecordFact,
    RefusedRequest,
    Regulation,
    ReportFacts,
    Scope,
    TemplateSend,
    VerifySweep,
)

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 8, tzinfo=UTC)
NUMBER_A = "106540352242922"
NUMBER_B = "106540352242923"
NUMBER_SILENT = "106540352242924"

# Customer identities that must never appear in a report.
CUSTOMER_PHONES = ("+4915112345678", "4915112345678", "+1 415 555 0172", "14155550172")
CUSTOMER_NAMES = ("Maria Schneider", "Jonathan Okafor")


def pseudonym(prefix: str, *parts: str) -> str:
    raw = hashlib.sha256("\x00".join(parts).encode()).digest()[:20]
    return prefix + base64.b32encode(raw).decode().rstrip("=").lower()


def subject(name: str) -> str:
    return pseudonym("s_", "subject", name)


def record(n: int) -> str:
    return pseudonym("r_", "record", str(n))


ALICE = subject(CUSTOMER_PHONES[0])  # opted in, receives marketing
BOB = subject(CUSTOMER_PHONES[2])  # never opted in, receives utility templates only
CAROL = subject("carol")  # opts in, later opts out
RETAIN = START + timedelta(days=6 * 365 + 10)
ROOT = hashlib.sha256(b"root 1000").hexdigest()
PREV_ROOT = hashlib.sha256(b"root 800").hexdigest()
NOTE = (f"archive.example/log\n1000\n{base64.b64encode(bytes.fromhex(ROOT)).decode()}\n\n"
        f"\u2014 archive.example/log {base64.b64encode(b'k' * 4 + b's' * 64).decode()}\n")

# Record ids the violations use (kept out of the clean set's id range).
MARKETING_AFTER_OPT_OUT = record(9001)
SHORT_LOCK_RECORD = record(9002)
MISSING_MEDIA_RECORD = record(9003)


def _records() -> tuple[RecordFact, ...]:
    out = []
    n = 0
    origins = (
        (Origin.CUSTOMER, Direction.INBOUND, ALICE),
        (Origin.BUSINESS_APP, Direction.OUTBOUND, ALICE),
        (Origin.BUSINESS_API, Direction.OUTBOUND, BOB),
        (Origin.HISTORY, Direction.INBOUND, CAROL),
    )
    for day in range(7):
        for hour in (3, 9, 15, 21):  # never more than 6 hours apart
            for number in (NUMBER_A, NUMBER_B):
                origin, direction, subj = origins[(day + hour) % 4]
                out.append(RecordFact(
                    record_id=record(n), kind="message" if hour != 21 else "status",
                    origin=origin, direction=direction, number=number,
                    occurred_at=START + timedelta(days=day, hours=hour, minutes=n % 50),
                    subject=subj, policy_id="finra_4511", required_retain_until=RETAIN,
                ))
                n += 1
    return tuple(out)


def clean_facts(regulation: Regulation = Regulation.FINRA) -> ReportFacts:
    records = _records()
    locks = tuple(
        LockObservation(
            object_key=f"records/{r.record_id[2:4]}/{r.record_id}", version_id=f"v{i}",
            record_id=r.record_id, observed_mode=LockMode.COMPLIANCE,
            observed_retain_until=RETAIN + timedelta(days=1), required_mode=LockMode.COMPLIANCE,
            required_retain_until=RETAIN,
        )
        for i, r in enumerate(records[:20])
    )
    return ReportFacts(
        scope=Scope(regulation=regulation, period=Period(START, END),
                    numbers=(NUMBER_B, NUMBER_A), archive="Example Brokerage LLC"),
        policies=(
            PolicyInForce("finra_4511", "3", 6 * 365 + 1, LockMode.COMPLIANCE),
            PolicyInForce("sec_17a4", "2", 3 * 365, LockMode.COMPLIANCE),
            PolicyInForce("hipaa", "1", 6 * 365, LockMode.COMPLIANCE),
            PolicyInForce("default", "1", 7 * 365, LockMode.COMPLIANCE),
        ),
        records=records,
        raw_captures=61,
        media=(MediaFact(record(3), "h_" + "a" * 26, MediaState.FETCHED),
               MediaFact(record(7), "h_" + "b" * 26, MediaState.FETCHED)),
        lock_check=LockCheck(mode=LockCheckMode.SAMPLE, population=len(records), read=len(locks),
                             seed="seed-42", observations=locks),
        holds=(HoldFact("hold_matter_17", START + timedelta(days=1), None, 12),
               HoldFact("hold_matter_09", START - timedelta(days=30),
                        START + timedelta(days=2), 4)),
        disposals=(DisposalFact(record(8001), START + timedelta(days=3), "default", record(8101)),),
        erasures=(ErasureFact("er_1", BOB, START + timedelta(days=1), ErasureStatus.COMPLETED,
                              START + timedelta(days=1, hours=2), None,
                              note=f"requested by {CUSTOMER_NAMES[1]} from {CUSTOMER_PHONES[3]}"),),
        consent_events=(
            ConsentEvent(ALICE, ConsentKind.OPT_IN, START - timedelta(days=40)),
            ConsentEvent(CAROL, ConsentKind.OPT_IN, START + timedelta(days=1)),
        ),
        template_sends=(
            TemplateSend(record(100), ALICE, NUMBER_A, START + timedelta(days=2), "marketing"),
            TemplateSend(record(101), CAROL, NUMBER_A, START + timedelta(days=2), "marketing"),
            TemplateSend(record(102), BOB, NUMBER_B, START + timedelta(days=2), "utility"),
        ),
        access=AccessFacts(
            events=(
                AccessEvent("u_auditor1", "auditor", AccessAction.SEARCH,
                            START + timedelta(hours=5),
                            detail=f"from:{CUSTOMER_PHONES[0]} {CUSTOMER_NAMES[0]}"),
                AccessEvent("u_auditor1", "auditor", AccessAction.VIEW,
                            START + timedelta(hours=6), detail=CUSTOMER_PHONES[1]),
                AccessEvent("u_officer", "compliance_officer", AccessAction.EXPORT,
                            START + timedelta(days=4),
                            detail=f"subject {CUSTOMER_NAMES[0]} {CUSTOMER_PHONES[2]}"),
            ),
            sign_in_failures=3,
            refused=(RefusedRequest("u_viewer", "scope_denied", 2),),
        ),
        integrity=IntegrityFacts(
            checkpoint=CheckpointFact(1000, ROOT, NOTE),
            previous=CheckpointFact(800, PREV_ROOT),
            consistency=Consistency.VERIFIED,
            verify=VerifySweep(END - timedelta(hours=1), 997),
        ),
        completeness=CompletenessFacts(
            history=(HistoryPhase(NUMBER_A, 0, True, 100), HistoryPhase(NUMBER_A, 1, True, 100)),
            watches=(NumberWatch(NUMBER_A, 86400), NumberWatch(NUMBER_B, 86400)),
        ),
        compliance=ComplianceFacts(
            second_copy=True, second_copy_location="s3://archive-dr (eu-central-2)",
            designated_party="third_party", designated_party_ref="dtp-undertaking-2026-03",
            designated_party_accesses=1, processing_record_ref="RoPA v4 (2026-10-01)",
            audit_log_retention_days=3653,
        ),
    )


def violating_facts(regulation: Regulation = Regulation.FINRA) -> ReportFacts:
    """``clean_facts`` plus exactly five violations (see tests)."""
    f = clean_facts(regulation)
    short_lock = LockObservation(
        object_key=f"records/{SHORT_LOCK_RECORD[2:4]}/{SHORT_LOCK_RECORD}", version_id="v-short",
        record_id=SHORT_LOCK_RECORD, observed_mode=LockMode.COMPLIANCE,
        observed_retain_until=RETAIN - timedelta(days=30), required_mode=LockMode.COMPLIANCE,
        required_retain_until=RETAIN,
    )
    observations = (*f.lock_check.observations, short_lock)
    return dataclasses.replace(
        f,
        scope=dataclasses.replace(f.scope, numbers=(*f.scope.numbers, NUMBER_SILENT)),
        records=(*f.records, RecordFact(
            record_id=record(9100), kind="message", origin=Origin.CUSTOMER,
            direction=Direction.INBOUND, number=NUMBER_SILENT,
            occurred_at=START + timedelta(hours=2), subject=CAROL, policy_id="finra_4511",
            required_retain_until=RETAIN)),
        media=(*f.media, MediaFact(MISSING_MEDIA_RECORD, "h_" + "c" * 26, MediaState.MISSING)),
        lock_check=dataclasses.replace(f.lock_check, population=f.lock_check.population + 1,
                                       read=len(observations), observations=observations),
        erasures=(*f.erasures, ErasureFact(
            "er_2", CAROL, START + timedelta(days=2), ErasureStatus.REFUSED,
            START + timedelta(days=3), "legal_hold",
            note=f"{CUSTOMER_NAMES[0]} ({CUSTOMER_PHONES[0]}) is party to matter 17")),
        consent_events=(*f.consent_events,
                        ConsentEvent(CAROL, ConsentKind.OPT_OUT, START + timedelta(days=3))),
        template_sends=(*f.template_sends, TemplateSend(
            MARKETING_AFTER_OPT_OUT, CAROL, NUMBER_A, START + timedelta(days=4), "marketing")),
        completeness=dataclasses.replace(
            f.completeness,
            watches=(*f.completeness.watches, NumberWatch(NUMBER_SILENT, 86400))),
    )
