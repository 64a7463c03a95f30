"""A real Prometheus (Debian's, unpacked by `make prometheus`) scraping the running test stack.

Its configuration is the local one (deploy/prometheus/render.py) with the repository's rules, scraping every
second; everything is asserted through Prometheus's own HTTP API (/api/v1/targets, /api/v1/query), as an
operator's dashboard or alert would see it: every process is a target and up, the series the alerts and the
dashboard read exist, and the per-tenant business counters move when an issue is filed through the gateway
and a department's call is refused. Each process's /metrics output passes `promtool check metrics`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
import yaml

from services.common.events import dead_letter_topic
from tests.conftest import System, wait_for
from tests.e2e.test_governance import department
from tests.e2e.test_skeleton_flow import ISSUE, post_issue
from tests.integration.test_intake_service import make_area
from tests.unit.test_monitoring_config import tool

REPO = Path(__file__).resolve().parents[2]
PROCESSES = {"org", "intake", "dispatch", "evaluation", "publication", "projector", "alliance", "gateway", "frontdoor"}
TENANT = "taiqian"  # ISSUE's location lies in it
DEADLINE = 120.0  # generous: a busy shared machine; first scrapes come within seconds on an idle one


def render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hongling_prometheus_render", REPO / "deploy/prometheus/render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        resp = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float:
        """The expression's one value (0 when it has no series yet)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def prometheus(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    settings = system.settings
    port = int(os.environ.get("HONGLING_PROMETHEUS_PORT") or settings.port_base + 90)
    workdir = tmp_path_factory.mktemp("prometheus")
    config = render().local_config(settings.port_base, scrape_interval="1s")
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (workdir / "prometheus.log").read_text(errors="replace")[-3000:]
        try:
            return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(ready, timeout=DEADLINE, interval=0.5)
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_every_process_of_the_stack_is_a_target_and_up(system: System, prometheus: Prometheus) -> None:
    # The rendered targets are the ports the running stack uses (its settings), process by process.
    settings = system.settings
    rendered = {name: addr for job in render().local_targets(settings.port_base).values() for name, addr in job}
    for name in PROCESSES - {"gateway", "frontdoor"}:
        assert rendered[name] == f"127.0.0.1:{settings.metrics_port(name)}", name
    assert rendered["gateway"] == f"127.0.0.1:{settings.gateway_port}"
    assert rendered["frontdoor"] == f"127.0.0.1:{settings.gateway_metrics_port}"

    def all_up() -> Any:
        active = prometheus.api("targets", state="active")["activeTargets"]
        health = {t["labels"]["service"]: (t["health"], t["lastError"]) for t in active}
        return {n for n, (h, _) in health.items() if h == "up"} == PROCESSES and health

    health = wait_for(all_up, timeout=DEADLINE, interval=0.5)
    assert set(health) == PROCESSES
    # And through the query API: `up` is 1 for each.
    ups = wait_for(lambda: len(r := prometheus.query('up{job=~"hongling-.*"} == 1')) == len(PROCESSES) and r)
    assert {r["metric"]["service"] for r in ups} == PROCESSES


def test_the_series_the_alerts_read_exist(prometheus: Prometheus) -> None:
    def present(expr: str) -> list[dict[str, Any]]:
        return wait_for(lambda: prometheus.query(expr), timeout=DEADLINE, interval=0.5)

    # Every process reports its CPU (the idle-cost figure) and every gRPC service its calls.
    cpu = present('process_cpu_seconds_total{job=~"hongling-.*"}')
    assert {r["metric"]["service"] for r in cpu} == PROCESSES
    # Outbox backlog per tenant, from the relays; consumer lag per group/topic/partition; dead-letter topics.
    backlog = present("hongling_outbox_backlog")
    assert {r["metric"]["tenant"] for r in backlog} >= {TENANT}
    lag = present("hongling_consumer_lag")
    assert {"group", "topic", "partition"} <= set(lag[0]["metric"])
    # Each consumer measures its dead-letter topic on its own schedule: wait until these two have.
    dlq = wait_for(
        lambda: [
            r
            for r in [prometheus.query("hongling_dlq_records")]
            if {m["metric"]["group"] for m in r} >= {"dispatch", "intake-lifecycle"}
        ],
        timeout=DEADLINE,
        interval=0.5,
    )[0]
    assert all(r["metric"]["topic"] == dead_letter_topic(r["metric"]["group"]) for r in dlq)
    # The audit chain signal, from the projector that checks each entry it projects: intact.
    broken = present("hongling_audit_chain_broken")
    assert {r["metric"]["service"] for r in broken} >= {"projector"}
    assert all(float(r["value"][1]) == 0 for r in broken if r["metric"]["service"] == "projector")
    # The recording rules are evaluated (their inputs exist now).
    present("tenant:hongling_outbox_backlog:sum")
    present("group_topic:hongling_consumer_lag:sum")
    present("group:hongling_dlq_records:max")


def test_filing_an_issue_and_a_refusal_move_the_tenants_counters(system: System, prometheus: Prometheus) -> None:
    received = f'sum(hongling_issues_received_total{{tenant="{TENANT}"}})'
    whistles = f'sum(hongling_whistles_blown_total{{tenant="{TENANT}"}})'
    refusals = f'sum(hongling_audit_entries_total{{job="hongling-gateway", tenant="{TENANT}", outcome="refused"}})'
    # The values Prometheus holds now (after a first scrape of every target: test order is not relied on).
    wait_for(lambda: len(prometheus.query('up{job=~"hongling-.*"} == 1')) == len(PROCESSES), timeout=DEADLINE)
    before = {expr: prometheus.value(expr) for expr in (received, whistles, refusals)}

    # An issue at a place of its own: one at ISSUE's fixed place is a duplicate of an earlier test's (still
    # open, within the window), and a duplicate blows no whistle of its own.
    here = make_area(system, TENANT).point(1)
    issue = {**ISSUE, "location": {"lat": here.lat, "lon": here.lon, "address": here.address}}
    resp = post_issue(system, TENANT, issue)
    assert resp.status_code == 201, resp.text
    assert resp.json()["issue"]["status"] != "duplicate", resp.text
    # A district department reading a tenant's records without a grant: refused, and the refusal audited.
    _sub, dept = department(system)
    refused = requests.get(f"{system.gateway}/api/v1/tenants/{TENANT}/org/member-units", headers=dept, timeout=15)
    assert refused.status_code == 403, refused.text

    for expr in (received, whistles, refusals):
        try:
            wait_for(lambda e=expr: prometheus.value(e) > before[e], timeout=DEADLINE, interval=0.5)
        except pytest.fail.Exception:
            pytest.fail(f"{expr} stayed at {prometheus.value(expr)} (was {before[expr]} before the issue was filed)")
    # Labels stay bounded: a tenant slug, never an issue's or a person's id.
    tenants = {r["metric"]["tenant"] for r in prometheus.query("hongling_issues_received_total")}
    assert tenants <= {"daimiao", "caiyuan", "taiqian", "shanggao", "xujialou", "shengzhuang", "qiujiadian"}
    # The per-tenant recording rule follows. A series born with the first issue starts at 1, and a rate sees
    # only increases between scrapes: the second issue, filed once the first is scraped, is one.
    assert post_issue(system, TENANT, issue).status_code == 201
    rate = f'tenant:hongling_issues_received:rate5m{{tenant="{TENANT}"}}'
    wait_for(lambda: prometheus.value(rate) > 0, timeout=DEADLINE, interval=0.5)


def test_every_process_metrics_follow_prometheus_naming(prometheus: Prometheus) -> None:
    """promtool's lint of what each target actually serves (units, base units, _total, snake_case)."""
    promtool = tool("promtool")
    active = wait_for(
        lambda: len(t := prometheus.api("targets", state="active")["activeTargets"]) == len(PROCESSES) and t,
        timeout=DEADLINE,
    )
    checked = set()
    for target in active:
        text = requests.get(target["scrapeUrl"], timeout=10).text
        assert "# TYPE" in text, target["scrapeUrl"]
        done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{target['labels']['service']}: {done.stdout}{done.stderr}"
        checked.add(target["labels"]["service"])
    assert checked == PROCESSES
