"""The chart's alerts and dashboard: off by default, valid, and built on metrics the hub exports.

Rules are checked and unit-tested with the real `promtool` (Debian's
prometheus package); the exported metrics are read from the same
prometheus_client registry JupyterHub serves on /hub/metrics, after
importing the modules that register the hub's collectors.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import missing
from tests.test_helm_chart import HERE, by_kind, helm_binary, render

MONITORING = (
    "hub.metrics.prometheusRule.enabled=true",
    "hub.metrics.grafanaDashboard.enabled=true",
)
ALERTS = {
    "SovereignAuditSpoolFilling",
    "SovereignAuditSinkBehind",
    "SovereignAuditShipperFailing",
    "SovereignAuditEventsDropped",
    "SovereignAuditChainBroken",
    "SovereignAuditVerifyStale",
    "SovereignSpawnFailures",
    "SovereignGpuQueueWait",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        missing("promtool (Debian's prometheus package)", "make system")
    return found


def rules_and_dashboard() -> tuple[dict, dict]:
    docs = render(helm_binary("4.1"), sets=MONITORING)
    (rule,) = by_kind(docs, "PrometheusRule")
    (config,) = [
        d
        for d in by_kind(docs, "ConfigMap")
        if d["metadata"]["name"].endswith("-grafana-dashboard")
    ]
    return rule, json.loads(config["data"]["sovereign-hub.json"])


def verify_samples(tmp_path: Path) -> set[str]:
    """The sample names `sovhub audit verify --metrics-file` writes (the chain's alerts)."""
    from prometheus_client.parser import text_string_to_metric_families

    from sovereign_hub.audit.signing import new_private_key_pem

    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "key.pub").write_bytes(new_private_key_pem()[1])
    done = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "audit", "verify", str(tmp_path / "empty.jsonl"),
         "--public-key", str(tmp_path / "key.pub"), "--metrics-file", str(tmp_path / "v.prom")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "v.prom").read_text()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def exported_samples() -> set[str]:
    """Every sample name /hub/metrics can carry, from the registry JupyterHub serves."""
    import jupyterhub.metrics  # noqa: F401 - registers JupyterHub's own metrics
    from prometheus_client import REGISTRY

    import sovereign_hub.audit.metrics  # the audit trail's collector
    import sovereign_hub.spawner.quotametrics  # the GPU ledger's metrics
    import sovereign_hub.spawner.waiting  # noqa: F401 - the GPU queue's metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    }


METRIC = re.compile(r"\b((?:sovereign|jupyterhub)_[a-z0-9_]+)\b")


def test_monitoring_is_off_by_default():
    docs = render(helm_binary("4.1"))
    assert not by_kind(docs, "PrometheusRule")
    assert not [d for d in by_kind(docs, "ConfigMap") if "grafana" in d["metadata"]["name"]]


def test_the_rules_pass_promtool_and_cover_each_alert(tmp_path):
    rule, _ = rules_and_dashboard()
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == ALERTS
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    done = subprocess.run([promtool(), "check", "rules", str(tmp_path / "rules.yaml")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise_promtool(tmp_path):
    """tests/helm/alerts-test.yaml's cases. Annotations (checked as templates by
    `promtool check rules` above) are left out, so the cases pin expressions, `for` and labels."""
    rule, _ = rules_and_dashboard()
    groups = rule["spec"]["groups"]
    for group in groups:
        for r in group["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(HERE / "alerts-test.yaml", tmp_path / "alerts-test.yaml")
    done = subprocess.run([promtool(), "test", "rules", str(tmp_path / "alerts-test.yaml")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    cases = yaml.safe_load((HERE / "alerts-test.yaml").read_text())["tests"][0]["alert_rule_test"]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == ALERTS


def test_thresholds_come_from_the_values(tmp_path):
    # A values file: `--set` would pass 0.8 as a string, which the schema refuses.
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"audit": {"spoolLimitBytes": 100_000_000},
                                      "hub": {"metrics": {"prometheusRule": {"spoolFullRatio": 0.8}}}}))  # fmt: skip
    (rule,) = by_kind(render(helm_binary("4.1"), values, sets=MONITORING), "PrometheusRule")
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert rules["SovereignAuditSpoolFilling"]["expr"].endswith("> 80000000")


@pytest.mark.parametrize("what", ["rules", "dashboard"])
def test_every_metric_used_is_one_the_hub_or_sovhub_verify_exports(what, tmp_path):
    rule, dashboard = rules_and_dashboard()
    if what == "rules":
        exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    else:
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        assert len(exprs) >= 10
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used, exprs
    unknown = used - exported_samples() - verify_samples(tmp_path)
    assert not unknown, f"{what} use metrics the hub does not export: {sorted(unknown)}"


def test_the_dashboard_is_one_grafana_can_import():
    _, dashboard = rules_and_dashboard()
    assert dashboard["uid"] == "sovereign-hub"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {"${datasource}"}
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    docs = render(helm_binary("4.1"), sets=MONITORING)
    (config,) = [d for d in by_kind(docs, "ConfigMap") if "grafana" in d["metadata"]["name"]]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
