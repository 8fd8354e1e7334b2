"""The pure policy engine: which policies apply to a record, and what they decide.

The one conflict rule (docs/policies.md §Conflict rule):

1. If any matched policy is an *obligation* (a legal duty to keep), the record is kept
   until the **latest** end among the matched obligations. A limitation never shortens
   an obligation.
2. Otherwise, if limitations match, the record is kept until the **earliest** of their
   caps and the default policy's period (a storage limitation caps what no obligation
   covers).
3. Otherwise the default policy decides.

Consent records (``record_kind == "consent"``) under a policy with
``consent.keep_consent_records_for`` count as an obligation of that length (proof of
consent, GDPR Art. 7(1)).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from policies.duration import Period
from policies.model import (
    AssignmentRule,
    Decision,
    Disposition,
    Erasure,
    Kind,
    LockMode,
    Policy,
    PolicySet,
    RecordFacts,
)

RULE_OBLIGATION = "longest obligation wins"
RULE_LIMITATION = "limitation caps the default (no obligation matched)"
RULE_DEFAULT = "default policy (nothing else matched)"


class ErasureVerdict(NamedTuple):
    allowed: bool
    reason: str


def match(policy: Policy, facts: RecordFacts) -> str | None:
    """Return why ``policy`` applies to ``facts`` (a sentence), or None if it does not."""
    if policy.applies_to is None:
        return f"{policy.id}: no assignment rules, applies to every record"
    for i, rule in enumerate(policy.applies_to):
        why = _rule_matches(rule, facts)
        if why is not None:
            return f"{policy.id}: applies_to[{i}] matched ({why})"
    return None


def _rule_matches(rule: AssignmentRule, f: RecordFacts) -> str | None:
    said: list[str] = []
    if rule.business_numbers is not None:
        hit = [n for n in (f.phone_number_id, f.business_number) if n in rule.business_numbers]
        if not hit:
            return None
        said.append(f"business number {hit[0]}")
    for name, allowed, value in (
        ("direction", rule.direction, f.direction),
        ("origin", rule.origin, f.origin),
        ("message_type", rule.message_type, f.message_type),
        ("record_kind", rule.record_kinds, f.record_kind),
    ):
        if allowed is None:
            continue
        if value not in allowed:
            return None
        said.append(f"{name}={value}")
    if rule.tags is not None:
        common = sorted(set(rule.tags) & f.tags)
        if not common:
            return None
        said.append(f"tag {common[0]}")
    return ", ".join(said) or "empty rule matches every record"


def decide(policy_set: PolicySet, facts: RecordFacts, now: datetime) -> Decision:
    """Apply the enabled policies of ``policy_set`` to ``facts`` as of ``now``."""
    reasons: list[str] = []
    matched: list[Policy] = []
    for p in policy_set.enabled:
        if p.kind is Kind.DEFAULT:
            continue
        why = match(p, facts)
        if why is not None:
            matched.append(p)
            reasons.append(why)
    default = policy_set.default_policy()

    def start_for(p: Policy) -> datetime:
        return _clock(p, facts, reasons)

    obligations: list[tuple[datetime, Policy, Period]] = []
    for p in matched:
        if p.kind is Kind.OBLIGATION:
            obligations.append((p.period.add_to(start_for(p)), p, p.period))
        if facts.record_kind == "consent" and p.consent.keep_consent_records_for:
            keep = Period.parse(p.consent.keep_consent_records_for)
            obligations.append((keep.add_to(start_for(p)), p, keep))
            reasons.append(f"{p.id}: consent records kept {keep} as proof of consent")
    limitations = [(p.period.add_to(start_for(p)), p) for p in matched
                   if p.kind is Kind.LIMITATION]

    if obligations:
        until, governing, period = max(obligations, key=lambda t: (t[0], t[1].id))
        rule = RULE_OBLIGATION
        reasons.append(f"conflict rule: {rule}: {governing.id} keeps {period} until "
                       f"{until.date().isoformat()}")
        for lim_until, lim in limitations:
            if lim_until < until:
                reasons.append(f"{lim.id}: its cap ({lim.retention.period}) does not shorten "
                               f"an obligation")
    elif limitations:
        d_until = default.period.add_to(start_for(default))
        until, governing = min([*limitations, (d_until, default)], key=lambda t: (t[0], t[1].id))
        rule = RULE_LIMITATION
        reasons.append(f"conflict rule: {rule}: {governing.id} ends retention on "
                       f"{until.date().isoformat()}")
    else:
        governing = default
        until = default.period.add_to(start_for(default))
        rule = RULE_DEFAULT
        reasons.append(f"conflict rule: {rule}: {default.id} keeps {default.retention.period}")

    deciders = [o[1] for o in obligations] or [governing]
    lock = (LockMode.COMPLIANCE if any(p.lock_mode is LockMode.COMPLIANCE for p in deciders)
            else LockMode.GOVERNANCE)
    two_person = any(p.disposition.two_person_approval for p in [*matched, governing])
    accessible = _accessible_until(deciders, facts, reasons)
    blocked = _erasure_blockers(matched, obligations, now)
    erasure = Erasure.REFUSED if blocked else Erasure.ALLOWED
    if blocked:
        reasons.append(f"erasure refused now: {', '.join(blocked)}")
    opt_in = tuple(sorted(
        p.id for p in matched
        if facts.message_type == "template" and facts.template_category is not None
        and facts.template_category.upper()
        in {c.upper() for c in p.consent.require_opt_in_for_template_categories}
    ))
    if opt_in:
        reasons.append(f"opt-in required for {facts.template_category} templates by "
                       f"{', '.join(opt_in)}")
    return Decision(
        matched=tuple(p.id for p in matched) or (default.id,),
        governing=governing.id,
        retain_until=until,
        clock_start=start_for(governing),
        accessible_until=accessible,
        lock_mode=lock,
        disposition=Disposition(governing.disposition.action, two_person),
        erasure=erasure,
        erasure_blocked_by=blocked,
        opt_in_required_by=opt_in,
        conflict_rule=rule,
        reasons=tuple(dict.fromkeys(reasons)),
        decided_at=now,
        facts=facts,
    )


def _clock(p: Policy, facts: RecordFacts, reasons: list[str]) -> datetime:
    want = p.retention.clock_starts.value
    value = facts.message_time if want == "message_time" else facts.capture_time
    if value is None:
        value = facts.capture_time or facts.message_time
        if value is None:
            raise ValueError("RecordFacts needs message_time or capture_time")
        reasons.append(f"{p.id}: {want} unknown, clock starts at the other time")
    return value


def _accessible_until(
    deciders: Sequence[Policy], facts: RecordFacts, reasons: list[str]
) -> datetime | None:
    ends = [Period.parse(p.retention.accessible_period).add_to(_clock(p, facts, reasons))
            for p in deciders if p.retention.accessible_period]
    return max(ends) if ends else None


def _erasure_blockers(
    matched: Sequence[Policy],
    obligations: Sequence[tuple[datetime, Policy, Period]],
    now: datetime,
) -> tuple[str, ...]:
    """Policies that refuse erasure *now*: an obligation still running (GDPR Art. 17(3)(b)),
    or a policy that refuses erasure outright while its period runs."""
    active = {p.id for until, p, _ in obligations if until > now}
    blocked = {p.id for p in matched if p.erasure is Erasure.REFUSED and p.id in active}
    if any(p.erasure is Erasure.ALLOWED_UNLESS_OBLIGATION for p in matched) or blocked:
        blocked |= active
    return tuple(sorted(blocked))


def erasure_check(decisions: Iterable[Decision], holds: Iterable[str]) -> ErasureVerdict:
    """May a subject's data be erased (its key destroyed)? ``decisions`` are those of the
    subject's records; ``holds`` names the legal holds covering them (GDPR Art. 17(3)(e)).
    The first blocker found is named in ``reason``."""
    holds = sorted(holds)
    if holds:
        return ErasureVerdict(False, f"legal hold {holds[0]} applies (GDPR Art. 17(3)(e))")
    count = 0
    for d in decisions:
        count += 1
        if d.erasure is Erasure.REFUSED:
            return ErasureVerdict(
                False,
                f"policy {d.erasure_blocked_by[0] if d.erasure_blocked_by else d.governing} "
                f"requires keeping a record until {d.retain_until.date().isoformat()} "
                f"(GDPR Art. 17(3)(b))",
            )
    return ErasureVerdict(True, f"no hold and no running obligation over {count} record(s)")


def explain(decision: Decision) -> str:
    """Multi-line, human-readable account of a decision (``archiver policy explain``)."""
    d = decision
    lines = [
        f"record kind:     {d.facts.record_kind}",
        f"matched:         {', '.join(d.matched)}",
        f"governing:       {d.governing}",
        f"conflict rule:   {d.conflict_rule}",
        f"clock starts:    {d.clock_start.isoformat()}",
        f"retain until:    {d.retain_until.isoformat()}",
    ]
    if d.accessible_until is not None:
        lines.append(f"accessible until:{' '}{d.accessible_until.isoformat()}")
    lines += [
        f"lock mode:       {d.lock_mode.value}",
        f"disposition:     {d.disposition.action}"
        + (" (two-person approval)" if d.disposition.two_person_approval else ""),
        f"erasure:         {d.erasure.value}"
        + (f" (blocked by {', '.join(d.erasure_blocked_by)})" if d.erasure_blocked_by else ""),
        "why:",
    ]
    lines += [f"  - {r}" for r in d.reasons]
    return "\n".join(lines)
