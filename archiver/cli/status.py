"""``archiver status``: one screen of health for an operator (``--json``: the same as JSON).

Every section is read independently: a backend that is down shows as an error in its
section, never as a traceback hiding the rest. The JSON keys are stable (tested); add
keys, never rename them.

* ``backends``: object store, state store and index pinged, as ``/readyz`` does.
* ``log``: size, latest signed checkpoint (size, signed at, age in seconds).
* ``batches``: raw batches captured and not yet processed; those stuck over an hour.
* ``index``: leaves not yet indexed.
* ``verify``: the newest ``verify_run`` leaf of the log (the scheduled sweep and
  ``archiver verify`` both append one): when, tree size, findings and their kinds.
* ``coexistence``: each number seen: connection (Meta's ``account_update`` events),
  history-sync phase, last activity and whether it is silent.
* ``holds``: open legal holds; ``reviews``: disposition reviews waiting.
* ``lock_modes``: the Object Lock mode each enabled policy gives (after
  ``ARCHIVER_LOCK_MODE``'s override, if any) and how many record leaves each mode
  covers, counted from the log's record leaves by their governing policy.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from archiver.runtime import Runtime

app = typer.Typer()

SECTIONS = (
    "backends",
    "log",
    "batches",
    "index",
    "verify",
    "coexistence",
    "holds",
    "reviews",
    "lock_modes",
)
_CHUNK = 1000  # log entries read per call when scanning


def _safe(read: Callable[[], Any]) -> Any:
    """A section's value, or ``{"error": ...}`` when its backend fails."""
    try:
        return read()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _age(at: str | None, now: datetime) -> float | None:
    if not at:
        return None
    when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round((now - when).total_seconds(), 1)


def _backends(runtime: Runtime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, backend in (
        ("object_store", runtime.objects),
        ("state_store", runtime.state),
        ("index", runtime.index),
    ):
        try:
            backend.ping()
            out[kind] = {"ok": True, "name": backend.name}
        except Exception as exc:
            out[kind] = {"ok": False, "name": backend.name, "error": str(exc)}
    return out


def _log(runtime: Runtime, now: datetime) -> dict[str, Any]:
    info = runtime.checkpoints.latest_info()
    signed_at = str(info["signed_at"]) if info and info.get("signed_at") else None
    return {
        "size": runtime.log.size(),
        "checkpoint_size": info.get("size") if info else None,
        "checkpoint_signed_at": signed_at,
        "checkpoint_age_s": _age(signed_at, now),
    }


def _batches(runtime: Runtime) -> dict[str, Any]:
    return {
        "pending": len(runtime.processor.pending_batches()),
        "stuck": len(runtime.processor.stuck_batches(limit=1000)),
    }


def _index(runtime: Runtime) -> dict[str, Any]:
    size = runtime.log.size()
    return {"lag": max(0, size - runtime.follower.cursor()), "backend": runtime.index.name}


def _entries_backwards(runtime: Runtime) -> Any:
    from archiver.ledger.entry import parse_entry

    end = runtime.log.size()
    while end > 0:
        start = max(0, end - _CHUNK)
        for data in reversed(runtime.log.entries(start, end)):
            yield parse_entry(data)
        end = start


def _verify(runtime: Runtime, now: datetime) -> dict[str, Any]:
    from archiver.ledger.entry import EntryKind

    for entry in _entries_backwards(runtime):
        if entry.kind is EntryKind.VERIFY_RUN:
            f = entry.fields
            at = str(f.get("time")) if f.get("time") else None
            return {
                "last_run": at,
                "age_s": _age(at, now),
                "tree_size": f.get("tree_size"),
                "sample": f.get("sample"),
                "findings": f.get("findings"),
                "pending": f.get("pending"),
                "kinds": list(f.get("kinds") or []),
            }
    return {"last_run": None, "age_s": None, "tree_size": None, "sample": None,
            "findings": None, "pending": None, "kinds": []}  # fmt: skip


def _coexistence(runtime: Runtime) -> dict[str, Any]:
    from archiver.coexistence import history_summary

    service = runtime.coexistence()
    service.catch_up()
    now = service.clock()
    out: dict[str, Any] = {}
    for number, view in sorted(service.number_views().items()):
        link = service.connection(number, view)
        history = history_summary(
            list((view.get("history_chunks") or {}).values()),
            [e for errs in (view.get("history_errors") or {}).values() for e in errs],
        )
        last = view.get("last_activity")
        silent_s = _age(last, now)
        out[number] = {
            "connection": link["state"],
            "connection_since": link["since"],
            "connection_event": link["event"],
            "history": history["state"],
            "history_progress": history["progress"],
            "last_activity": last,
            "silent_s": silent_s,
            "silent": silent_s is not None and silent_s > service.silence.total_seconds(),
        }
    return out


def _holds(runtime: Runtime) -> dict[str, Any]:

    holds = runtime.retention.registry.open_holds()
    return {"open": len(holds), "ids": sorted(str(h.get("hold_id") or h.get("id")) for h in holds)}


def _reviews(runtime: Runtime) -> dict[str, Any]:
    from archiver.retention.reviews import list_reviews

    return {"waiting": len(list_reviews(runtime.state))}


def _lock_modes(runtime: Runtime) -> dict[str, Any]:
    from archiver.ledger.entry import EntryKind, parse_entry

    decider = runtime.policy
    policies = {
        p.id: (decider.lock_override or p.lock_mode).value for p in decider.policy_set.enabled
    }
    records: Counter[str] = Counter()
    size = runtime.log.size()
    for start in range(0, size, _CHUNK):
        for data in runtime.log.entries(start, min(size, start + _CHUNK)):
            entry = parse_entry(data)
            if entry.kind is EntryKind.RECORD:
                records[policies.get(str(entry.fields.get("policy")), "unknown_policy")] += 1
    return {
        "setting": runtime.settings.lock_mode,
        "policies": dict(sorted(policies.items())),
        "records": dict(sorted(records.items())),
    }


def collect(runtime: Runtime, now: datetime | None = None) -> dict[str, Any]:
    """The status document (JSON-ready); keys: ``SECTIONS``."""
    now = now or datetime.now(UTC)
    readers: dict[str, Callable[[], Any]] = {
        "backends": lambda: _backends(runtime),
        "log": lambda: _log(runtime, now),
        "batches": lambda: _batches(runtime),
        "index": lambda: _index(runtime),
        "verify": lambda: _verify(runtime, now),
        "coexistence": lambda: _coexistence(runtime),
        "holds": lambda: _holds(runtime),
        "reviews": lambda: _reviews(runtime),
        "lock_modes": lambda: _lock_modes(runtime),
    }
    return {"at": now.isoformat(), **{name: _safe(readers[name]) for name in SECTIONS}}


def _fmt_age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit} ago"
    return f"{seconds:.0f} s ago"


def render(doc: dict[str, Any]) -> str:
    """The one-screen text form."""
    lines = [f"archiver status at {doc['at']}"]

    def section(name: str, body: Callable[[Any], list[str]]) -> None:
        value = doc[name]
        if isinstance(value, dict) and set(value) == {"error"}:
            lines.append(f"{name:<12} ERROR {value['error']}")
        else:
            lines.extend(body(value))

    section("backends", lambda v: [
        f"{'backends':<12} " + "  ".join(
            f"{k}={'ok' if b['ok'] else 'DOWN'} ({b['name']})" for k, b in v.items()
        )
    ])  # fmt: skip
    section("log", lambda v: [
        f"{'log':<12} {v['size']} leaves; last checkpoint "
        + (f"at size {v['checkpoint_size']}, {_fmt_age(v['checkpoint_age_s'])}"
           if v["checkpoint_signed_at"] else "none yet")
    ])  # fmt: skip
    section("batches", lambda v: [
        f"{'batches':<12} {v['pending']} pending, {v['stuck']} stuck (over 1 h)"
    ])  # fmt: skip
    section("index", lambda v: [f"{'index':<12} lag {v['lag']} leaves ({v['backend']})"])
    section("verify", lambda v: [
        f"{'verify':<12} "
        + (f"last sweep {_fmt_age(v['age_s'])} over {v['tree_size']} leaves: "
           f"{v['findings']} finding(s)" + (f" {v['kinds']}" if v["kinds"] else "")
           + f", {v['pending']} pending" if v["last_run"] else "no sweep recorded yet")
    ])  # fmt: skip

    def coexistence(v: dict[str, Any]) -> list[str]:
        if not v:
            return [f"{'coexistence':<12} no number seen yet"]
        out = [f"{'coexistence':<12} {len(v)} number(s)"]
        for number, n in v.items():
            link = n["connection"].upper() if n["connection"] != "connected" else "connected"
            since = (
                f" since {n['connection_since']} ({n['connection_event']})"
                if (n["connection_since"])
                else ""
            )
            silent = (
                f", SILENT {_fmt_age(n['silent_s'])}"
                if n["silent"]
                else (f", last activity {_fmt_age(n['silent_s'])}")
            )
            out.append(
                f"  {number}: {link}{since}; history {n['history']} "
                f"({n['history_progress']}%){silent}"
            )
        return out

    section("coexistence", coexistence)
    section("holds", lambda v: [f"{'holds':<12} {v['open']} open"])
    section("reviews", lambda v: [f"{'reviews':<12} {v['waiting']} disposition review(s) waiting"])
    section("lock_modes", lambda v: [
        f"{'lock modes':<12} setting {v['setting']}; policies "
        + ", ".join(f"{p}={m}" for p, m in v["policies"].items())
        + "; record leaves "
        + (", ".join(f"{m}={c}" for m, c in v["records"].items()) or "none")
    ])  # fmt: skip
    return "\n".join(lines)


@app.command("status")
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the same status as one JSON document.")
    ] = False,
) -> None:
    """Show the archive's health on one screen.

    Backends, log and checkpoint, pending batches, index lag, the last verify sweep,
    Coexistence numbers, holds, reviews and Object Lock modes.
    """
    from archiver.cli.archive import open_runtime

    runtime = open_runtime()  # logs to stderr; stdout is the status
    try:
        doc = collect(runtime)
    finally:
        runtime.audit.flush()
    typer.echo(json.dumps(doc, indent=2, sort_keys=True) if as_json else render(doc))
