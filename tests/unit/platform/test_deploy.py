"""``deploy/``: the Prometheus rules and the Grafana dashboard name only metrics the app
really exports at ``GET /metrics`` (plus node_exporter's and MinIO's), and cover what an
operator must be alerted to (issue 13). ``promtool check rules`` runs in ``.ci/run``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.support.apps import embedded_settings, running_app

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
# PromQL words that are not metric names.
PROMQL = {
    "sum", "by", "without", "or", "and", "unless", "on", "ignoring", "time", "rate",
    "increase", "histogram_quantile", "max", "min", "avg", "count", "le", "bool",
    "humanizeDuration",
}  # fmt: skip
OUTSIDE = ("node_", "minio_")  # node_exporter's disk, MinIO's storage
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Identifiers of ``expr`` that name series: label matchers, ranges and strings out."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"|by \([^)]*\)", " ", expr)
    return {t for t in IDENT.findall(bare) if t not in PROMQL}


def exported(tmp_path: Path) -> set[str]:
    with running_app(embedded_settings(tmp_path / "data")) as (client, _):
        text = client.get("/metrics").text
    names: set[str] = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = kind_line
        if kind == "counter":  # the text format names counters with their _total
            names.add(name if name.endswith("_total") else name + "_total")
        elif kind == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load((DEPLOY / "prometheus-rules.yml").read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def dashboard_exprs() -> list[str]:
    doc = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def test_rules_and_dashboard_name_only_exported_metrics(tmp_path: Path) -> None:
    ours = exported(tmp_path)
    assert "archiver_coexistence_connected" in ours and "archiver_index_lag" in ours
    exprs = [*rule_exprs().values(), *dashboard_exprs()]
    named = set().union(*(metric_names(e) for e in exprs))
    unknown = {n for n in named if n not in ours and not n.startswith(OUTSIDE) and n != "up"}
    assert not unknown, f"not exported by /metrics: {sorted(unknown)}"
    assert any(n.startswith("archiver_") for n in named)


def test_rules_cover_what_an_operator_must_know() -> None:
    names = {n for e in rule_exprs().values() for n in metric_names(e)}
    for metric in (
        "archiver_unprocessable_deliveries_total",  # capture errors
        "archiver_index_lag",
        "archiver_batches_stuck",  # pending batches
        "archiver_checkpoint_age_seconds",
        "archiver_verify_findings",
        "archiver_coexistence_connected",  # disconnection
        "archiver_coexistence_last_activity_timestamp_seconds",  # silence
        "node_filesystem_avail_bytes",  # disk
    ):
        assert metric in names, metric


def test_metric_names_sees_through_promql() -> None:
    expr = 'sum by (reason) (increase(archiver_x_total{kind=~"a.*"}[15m])) > 0 or up == 0'
    assert metric_names(expr) == {"archiver_x_total", "up"}
