"""The monitoring configuration: deploy/prometheus (scrape configs, rules and their promtool unit tests),
deploy/alertmanager and the Grafana dashboard, checked with Debian's promtool and amtool (make prometheus).

What an operator would notice if it were wrong: a rule or a dashboard panel reading a series no process
exports (an empty graph, an alert that can never fire), an alert that fires on the wrong series or not at
all, a configuration Prometheus or Alertmanager refuses at start-up, an alert whose runbook section is missing.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from services.common import metrics
from services.common.audit import GENESIS, Entry, entry_hash
from services.common.audit_readmodel import AuditProjection

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
DASHBOARD = REPO / "deploy" / "grafana" / "hongling.json"
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOK = REPO / "docs" / "runbook.md"


def tool(name: str) -> str:
    """promtool or amtool as deploy/local/env.sh places them (deploy/local/prometheus.sh unpacks them)."""
    var = f"HONGLING_{name.upper()}"
    path = (
        os.environ.get(var)
        or subprocess.run(
            ["bash", "-c", f'source deploy/local/env.sh >/dev/null 2>&1; printf %s "${var}"'],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert path and os.access(path, os.X_OK), f"{name} not found at {path!r}: run `make prometheus` first"
    return path


def run(*args: str, stdin: str | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------ what the code exports


def metric_modules() -> Iterator[str]:
    """Every module of services/ and gateway/ that makes a Prometheus metric (imports prometheus_client)."""
    for root in ("services", "gateway"):
        for path in sorted((REPO / root).rglob("*.py")):
            if "migrations" in path.parts or path.name == "__main__.py":
                continue
            if "prometheus_client" in path.read_text(encoding="utf-8"):
                yield ".".join(path.relative_to(REPO).with_suffix("").parts)


@pytest.fixture(scope="module")
def families() -> dict[str, tuple[str, str]]:
    """name -> (type, help) of every metric the code defines (the default registry, after importing them)."""
    for module in metric_modules():
        importlib.import_module(module)
    return {m.name: (m.type, m.documentation) for m in REGISTRY.collect()}


def series_names(families: dict[str, tuple[str, str]]) -> set[str]:
    """The series names a scrape of those metrics can hold, plus Prometheus's own `up`."""
    names = {"up"}
    for name, (kind, _help) in families.items():
        if kind == "counter":
            names |= {f"{name}_total", f"{name}_created"}
        elif kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
        else:
            names.add(name)
    return names


def recorded_names() -> set[str]:
    return {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


# PromQL words that are not series names: keywords, aggregation modifiers, and what a selector may hold.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
PROMQL_WORDS |= {"offset", "inf", "nan", "le"}


def selected_names(expr: str) -> set[str]:
    """The series names a PromQL expression (or a Grafana label_values(...) query) selects."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings: label values, printf formats
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\blabel_values\s*\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS or word.startswith("$"):
            continue  # a function or aggregation, or a keyword
        names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if v.get("type") == "query"]
    return exprs


def rule_exprs() -> list[str]:
    return [
        rule["expr"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
    ]


def test_selected_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (tenant, le) (rate(hongling_x_seconds_bucket{tenant=~"a|b", le="+Inf"}[1h])))'
        " / on (job) group_left (service) up offset 5m and tenant:y:rate5m > bool 0"
    )
    assert selected_names(expr) == {"hongling_x_seconds_bucket", "up", "tenant:y:rate5m"}
    assert selected_names("label_values(hongling_outbox_backlog, tenant)") == {"hongling_outbox_backlog"}


def test_every_series_the_dashboard_and_rules_read_exists(families: dict[str, tuple[str, str]]) -> None:
    known = series_names(families) | recorded_names()
    exprs = dashboard_exprs() + rule_exprs()
    assert len(exprs) > 20
    missing = {name: expr for expr in exprs for name in selected_names(expr) if name not in known}
    assert not missing, f"series no process exports and no recording rule makes: {missing}"
    # The business metrics the issue names are on the board.
    used = set().union(*(selected_names(e) for e in dashboard_exprs()))
    for wanted in (
        "tenant:hongling_issues_received:rate5m",
        "tenant:hongling_whistle_report_in_seconds:p90_1h",
        "tenant:hongling_dispatch_deadlines_missed:rate1h",
        "tenant:hongling_outbox_backlog:sum",
        "group_topic:hongling_consumer_lag:sum",
        "group:hongling_dlq_records:max",
        "tenant:hongling_audit_refusals:rate5m",
        "hongling_audit_chain_broken",
        "up",
    ):
        assert wanted in used, wanted


def test_every_metric_in_the_code_follows_prometheus_naming(families: dict[str, tuple[str, str]]) -> None:
    """promtool's lint (units in names, base units, _total counters, snake_case) on one sample of every family
    the code defines: it lints only families with samples, and many have none until their first event."""
    lines = []
    for name, (kind, help_) in sorted(families.items()):
        family = f"{name}_total" if kind == "counter" else name  # as prometheus_client writes a counter
        sample = {"histogram": f'{name}_bucket{{le="+Inf"}} 0\n{name}_sum 0\n{name}_count 0'}
        lines += [f"# HELP {family} {help_}", f"# TYPE {family} {kind}", sample.get(kind, f"{family} 0")]
    assert len(families) > 60
    done = run(tool("promtool"), "check", "metrics", stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    # The linter itself catches what it should (a test that cannot fail is no test).
    bad = "# HELP hl_wait_ms x\n# TYPE hl_wait_ms gauge\nhl_wait_ms 1\n"
    bad += "# HELP hlCalls x\n# TYPE hlCalls counter\nhlCalls 1\n"
    done = run(tool("promtool"), "check", "metrics", stdin=bad)
    assert done.returncode != 0 and "_total" in done.stdout + done.stderr


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    done = run(tool("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    done = run(tool("promtool"), "test", "rules", *(p.name for p in tests), cwd=PROM / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_required_alerts_exist_with_a_runbook_section() -> None:
    alerts = {
        rule["alert"]: rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for wanted in (
        "HonglingServiceDown",
        "HonglingConsumerLagHigh",
        "HonglingConsumerLagGrowing",
        "HonglingOutboxBacklogGrowing",
        "HonglingDeadLetters",
        "HonglingSLABreachRate",
        "HonglingAuditChainBroken",
    ):
        assert wanted in alerts, wanted
    runbook = RUNBOOK.read_text(encoding="utf-8")
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["runbook"] == f"docs/runbook.md#{name.lower()}", name
        assert re.search(rf"^#+ {name}\s*$", runbook, re.M), f"docs/runbook.md has no heading for {name}"


def test_the_local_config_scrapes_every_process_of_the_stack(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("render", PROM / "render.py")
    assert spec and spec.loader
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    targets = render.local_targets(21000)
    flat = {name: addr for job in targets.values() for name, addr in job}
    # Every process deploy/local/services.sh starts, at the port deploy/local/env.sh gives it for base 21000.
    env = subprocess.run(
        ["bash", "-c", "source deploy/local/env.sh >/dev/null 2>&1; env"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("HONGLING_")}, "HONGLING_PORT_BASE": "21000"},
    ).stdout
    ports = dict(line.split("=", 1) for line in env.splitlines() if line.startswith("HONGLING_") and "=" in line)
    for name in ("org", "intake", "dispatch", "evaluation", "publication", "projector", "alliance"):
        assert flat[name] == f"127.0.0.1:{ports[f'HONGLING_{name.upper()}_METRICS_PORT']}"
    assert flat["gateway"] == f"127.0.0.1:{ports['HONGLING_GATEWAY_PORT']}"
    assert flat["frontdoor"] == f"127.0.0.1:{ports['HONGLING_GATEWAY_METRICS_PORT']}"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(render.local_config(21000, scrape_interval="1s")), encoding="utf-8")
    done = run(tool("promtool"), "check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_config_is_valid_and_alerts_alertmanager() -> None:
    path = PROM / "prometheus.compose.yml"
    done = run(tool("promtool"), "check", "config", "--syntax-only", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    services = {
        sc["labels"]["service"] for job in config["scrape_configs"] for sc in job["static_configs"] if "labels" in sc
    }
    assert services == {"org", "intake", "dispatch", "evaluation", "publication", "projector", "alliance"} | {
        "gateway",
        "frontdoor",
    }


def test_the_kubernetes_config_finds_hongling_pods_by_label_and_annotation(tmp_path: Path) -> None:
    """Debian's Prometheus is built without Kubernetes discovery, so promtool checks the rest of the file with
    each kubernetes_sd_configs replaced; the discovery and its relabelling are checked here."""
    path = PROM / "prometheus.k8s.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    for job in config["scrape_configs"]:
        assert job["kubernetes_sd_configs"][0]["role"] == "pod"
        keeps = {(tuple(r["source_labels"]), r["regex"]) for r in job["relabel_configs"] if r.get("action") == "keep"}
        assert (("__meta_kubernetes_pod_label_app_kubernetes_io_part_of",), "hongling") in keeps
        assert (("__meta_kubernetes_pod_annotation_prometheus_io_scrape",), "true") in keeps
        labels = {r.get("target_label") for r in job["relabel_configs"]}
        assert {"__address__", "__metrics_path__", "service"} <= labels
    rest: dict[str, Any] = copy.deepcopy(config)
    for job in rest["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["hongling:9151"]}]
    check = tmp_path / "k8s-rest.yml"
    check.write_text(yaml.safe_dump(rest), encoding="utf-8")
    done = run(tool("promtool"), "check", "config", "--syntax-only", str(check))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alertmanager_config_is_valid_and_holds_no_secret() -> None:
    done = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    assert config["route"]["receiver"] in {r["name"] for r in config["receivers"]}
    text = json.dumps(config)
    for secret_field in ("api_key", "auth_password", "bot_token", "routing_key", "service_key", '"url"'):
        assert secret_field not in text, secret_field


# ------------------------------------------------------------------ the signals behind the alerts


def chained(seq: int, prev: str) -> Entry:
    """An entry as AuditLog.append writes it: linked to `prev`, its hash over its content."""
    draft = Entry(seq=seq, time="2026-01-01T00:00:00.000000Z", actor="a", role="ops", action="x", outcome="done")
    draft = Entry(**{**draft.__dict__, "prev_hash": prev})
    return Entry(**{**draft.__dict__, "hash": entry_hash(draft)})


def chain(n: int) -> list[Entry]:
    entries, prev = [], GENESIS
    for seq in range(1, n + 1):
        entries.append(chained(seq, prev))
        prev = entries[-1].hash
    return entries


def test_the_audit_projection_raises_the_chain_broken_signal_on_a_changed_entry() -> None:
    metrics.AUDIT_CHAIN_BROKEN.set(0)
    try:
        good = chain(6)
        projection = AuditProjection.__new__(AuditProjection)
        projection._check_links(0, good[:3])
        projection._check_links(3, good[3:])
        assert REGISTRY.get_sample_value("hongling_audit_chain_broken") == 0
        assert REGISTRY.get_sample_value("hongling_audit_chain_checked_seq") == 6
        # An entry whose content was changed after it was chained (its hash no longer matches).
        changed = chain(4)
        changed[2] = Entry(**{**changed[2].__dict__, "actor": "someone-else"})
        AuditProjection.__new__(AuditProjection)._check_links(0, changed)
        assert REGISTRY.get_sample_value("hongling_audit_chain_broken") == 1
        # An entry whose own hash is right but whose link skips its predecessor (a forged or re-ordered entry),
        # in the next batch: the link is checked across batches too.
        metrics.AUDIT_CHAIN_BROKEN.set(0)
        first = chain(2)
        fresh = AuditProjection.__new__(AuditProjection)
        fresh._check_links(0, first)
        assert REGISTRY.get_sample_value("hongling_audit_chain_broken") == 0
        fresh._check_links(2, [chained(3, first[0].hash)])
        assert REGISTRY.get_sample_value("hongling_audit_chain_broken") == 1
    finally:
        metrics.AUDIT_CHAIN_BROKEN.set(0)


def test_tenant_labels_stay_bounded() -> None:
    assert metrics.tenant_label("daimiao") == "daimiao"
    assert metrics.tenant_label("") == "district"
    assert metrics.tenant_label("some-issue-id-1234") == "other"
