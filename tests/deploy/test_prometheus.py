"""The alert rules, their promtool unit tests and the Grafana dashboard, checked by promtool and
against docs/operating.md and docker-compose.yml.

No database and no Django: run with
`pytest -p no:django --noconftest tests/deploy/test_prometheus.py`. That every metric they use
exists in the live processes is tests/deploy/test_live_metrics.py.
"""

import json
import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "todo-scale.json"

# PromQL words that are not metric names: aggregations and functions are followed by "(" and
# dropped anyway; these stand alone.
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


def require_promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("`promtool` is not installed (Debian package `prometheus`)")
    return path


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_panels() -> list[dict]:
    return [
        panel for panel in json.loads(DASHBOARD.read_text())["panels"] if panel["type"] != "row"
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (`up` included)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings: label values, regexes
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*", text):
        following = text[match.end() :].lstrip()[:1]
        if following == "(" or match.group() in PROMQL_KEYWORDS:
            continue
        names.add(match.group())
    return names


def used_exprs() -> dict[str, str]:
    """Every expression an alert or a dashboard panel evaluates, by where it is used."""
    exprs = {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}
    for panel in dashboard_panels():
        for target in panel["targets"]:
            exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return exprs


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# The PromQL reader the live test relies on


def test_metric_names_are_read_from_promql():
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route=~"x|y"}[5m])))'
        " / on (instance) group_left sum(rate(b_total[$__rate_interval])) > 0.5"
        ' or absent(up{job="worker"} == 1) unless c:recorded offset 5m'
    )

    assert metric_names(expr) == {"a_bucket", "b_total", "up", "c:recorded"}


# promtool


def test_alert_rules_pass_promtool_check_rules():
    result = run([require_promtool(), "check", "rules", str(ALERTS)])

    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_promtool_unit_tests():
    result = run([require_promtool(), "test", "rules", *map(str, RULE_TESTS)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_a_broken_expectation_fails_the_unit_tests(tmp_path):
    # The check above is only worth something if a wrong expectation fails it.
    tests = yaml.safe_load((PROMETHEUS_DIR / "tests" / "redis.yml").read_text())
    tests["rule_files"] = [str(ALERTS)]
    tests["tests"][0]["alert_rule_test"][0]["exp_alerts"] = []
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(tests))

    result = run([require_promtool(), "test", "rules", str(broken)])

    assert result.returncode != 0


def test_compose_prometheus_loads_the_alert_rules():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())

    result = run([require_promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])

    assert result.returncode == 0, result.stdout + result.stderr
    assert config["rule_files"] == ["alerts.yml"]
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_stack_prometheus_loads_the_alert_rules(tmp_path):
    template = (PROMETHEUS_DIR / "prometheus.local.yml.template").read_text()
    rendered = string.Template(template).safe_substitute(
        TARGETS='"127.0.0.1:8101"',
        WORKER_TARGET='"127.0.0.1:9808"',
        RELAY_TARGET='"127.0.0.1:9809"',
        RULES=str(ALERTS),
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(rendered)

    result = run([require_promtool(), "check", "config", str(path)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(rendered)["rule_files"] == [str(ALERTS)]
    assert "SUCCESS: 1 rule files found" in result.stdout


# The rules themselves


def test_every_alert_waits_and_says_what_happened_and_where_the_runbook_is():
    runbook_anchors = github_anchors((ROOT / "docs" / "operating.md").read_text())

    for rule in alert_rules():
        name = rule["alert"]
        annotations = rule["annotations"]
        assert re.fullmatch(r"\d+m", rule["for"]), name
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert annotations["summary"], name
        assert annotations["description"], name
        assert annotations["runbook"] == f"docs/operating.md#{name.lower()}", name
        assert name.lower() in runbook_anchors, f"docs/operating.md has no section {name}"


def test_the_alerts_cover_what_an_operator_must_hear_of():
    used = {rule["alert"]: metric_names(rule["expr"]) for rule in alert_rules()}
    everything = set().union(*used.values())

    assert {
        "todo_scale_http_requests_total",
        "todo_scale_http_request_duration_seconds_bucket",
        "todo_scale_db_replica_lag_bytes",
        "todo_scale_db_replica_ejections_total",
        "todo_scale_db_replica_fallbacks_total",
        "todo_scale_outbox_oldest_unsent_age_seconds",
        "todo_scale_outbox_unsent",
        "todo_scale_redis_bypass_total",
        "django_migrations_unapplied_total",
        "up",
    } <= everything
    assert 'up{job="worker"}' in next(
        r["expr"] for r in alert_rules() if r["alert"] == "TodoScaleNoWorker"
    )


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_keeps_it_quiet():
    fired, quiet = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}

    assert names - fired == set(), "never fired in a test"
    assert names - quiet == set(), "never kept quiet in a test"


# Grafana


def test_dashboard_has_a_panel_for_each_thing_an_operator_watches():
    panels = dashboard_panels()
    metrics_by_panel = {
        panel["title"]: set().union(*(metric_names(t["expr"]) for t in panel["targets"]))
        for panel in panels
    }
    everything = set().union(*metrics_by_panel.values())

    assert {
        "todo_scale_http_requests_total",
        "todo_scale_http_request_duration_seconds_bucket",
        "todo_scale_db_reads_total",
        "todo_scale_db_replica_fallbacks_total",
        "todo_scale_db_replica_lag_bytes",
        "todo_scale_gateway_responses_total",
        "todo_scale_redis_bypass_total",
        "todo_scale_outbox_unsent",
        "todo_scale_outbox_oldest_unsent_age_seconds",
        "todo_scale_celery_tasks_total",
        "todo_scale_celery_task_duration_seconds_bucket",
    } <= everything
    # Every panel reads the dashboard's data source variable, so an import elsewhere works.
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    ids = [panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_is_provisioned_with_the_prometheus_data_source_and_the_dashboard():
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "todo-scale.yml").read_text()
    )
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]

    (source,) = datasources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    (provider,) = providers["providers"]
    dashboards_dir = provider["options"]["path"]
    assert compose["grafana"]["volumes"] == [
        "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
        f"./deploy/grafana/todo-scale.json:{dashboards_dir}/todo-scale.json:ro",
    ]
    assert (
        "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"
        in (compose["prometheus"]["volumes"])
    )


def test_compose_runs_jaeger_with_otlp_and_its_ui():
    jaeger = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["jaeger"]

    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert {"16686:16686", "4317:4317", "4318:4318"} <= set(jaeger["ports"])
