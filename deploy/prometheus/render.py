"""Prometheus's configuration for the local stack, from HONGLING_PORT_BASE (the ports of deploy/local/env.sh).

    .venv/bin/python deploy/prometheus/render.py local [--port-base 17000] [--scrape-interval 15s] > prometheus.yml

Every process of the local stack is a target: the services' and the projector's metrics ports (port base +
151 … 157, services/common/settings.py SERVICE_PORT_OFFSETS), the gateway's own /metrics (base + 80; open
without a token on a direct loopback connection only: gateway/policy.py "metrics") and the gRPC front door's
metrics port (HONGLING_GATEWAY_METRICS_PORT, base + 160). Each target carries a `service` label, as in the
compose (prometheus.compose.yml) and Kubernetes (prometheus.k8s.yml) configurations, so that the rules in
deploy/prometheus/rules read the same series everywhere.

The ports come from the code's own table, not a copy: a port moved there moves here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.common.settings import SERVICE_PORT_OFFSETS  # noqa: E402

GATEWAY_OFFSET = 80  # HONGLING_GATEWAY_PORT: the HTTP gateway serves /metrics itself
FRONTDOOR_METRICS_OFFSET = 160  # HONGLING_GATEWAY_METRICS_PORT: the front door's /metrics (gateway/frontdoor.py)
RULES_DIR = HERE / "rules"


def local_targets(port_base: int, host: str = "127.0.0.1") -> dict[str, list[tuple[str, str]]]:
    """job -> [(service, host:port)] for every process of the local stack (deploy/local/services.sh)."""
    services = [(name, f"{host}:{port_base + metrics}") for name, (_grpc, metrics) in SERVICE_PORT_OFFSETS.items()]
    return {
        "hongling-services": sorted(services),
        "hongling-gateway": [("gateway", f"{host}:{port_base + GATEWAY_OFFSET}")],
        "hongling-frontdoor": [("frontdoor", f"{host}:{port_base + FRONTDOOR_METRICS_OFFSET}")],
    }


def local_config(
    port_base: int,
    *,
    scrape_interval: str = "15s",
    rules_dir: Path = RULES_DIR,
    alertmanager: str | None = None,
) -> dict[str, Any]:
    """The configuration as a dict (yaml.safe_dump writes it)."""
    jobs = []
    for job, targets in local_targets(port_base).items():
        jobs.append(
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [addr], "labels": {"service": name}} for name, addr in targets],
            }
        )
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": scrape_interval,
            "external_labels": {"deployment": "local"},
        },
        "rule_files": [str(rules_dir / "*.yml")],
        "scrape_configs": jobs,
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    local = sub.add_parser("local", help="the local stack's scrape configuration")
    local.add_argument("--port-base", type=int, default=int(os.environ.get("HONGLING_PORT_BASE", "17000")))
    local.add_argument("--scrape-interval", default="15s")
    local.add_argument("--rules-dir", type=Path, default=RULES_DIR)
    local.add_argument("--alertmanager", default=None, help="host:port of an Alertmanager, if one runs")
    args = parser.parse_args(argv)
    config = local_config(
        args.port_base,
        scrape_interval=args.scrape_interval,
        rules_dir=args.rules_dir.resolve(),
        alertmanager=args.alertmanager,
    )
    sys.stdout.write("# Rendered by deploy/prometheus/render.py local: do not edit, render again.\n")
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
