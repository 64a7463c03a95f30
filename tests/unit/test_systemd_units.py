"""deploy/systemd: the single machine's supervisor. Every process deploy/local/services.sh starts has a unit that
restarts it on failure, with the secrets from the operator's file; `systemd-analyze verify` accepts them all."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deployment_checks import REPO, SYSTEMD, processes_of_services_sh, render_units, systemd_problems

SERVICES_SH = REPO / "deploy" / "local" / "services.sh"


def test_every_process_of_services_sh_has_a_supervised_unit() -> None:
    processes = processes_of_services_sh(SERVICES_SH)
    assert set(processes) >= {"org", "intake", "dispatch", "gateway", "frontdoor", "projector"}
    assert processes["frontdoor"] == "gateway.frontdoor"
    assert systemd_problems(SYSTEMD, SERVICES_SH) == []


def test_a_process_without_a_unit_or_a_unit_that_gives_up_is_caught(tmp_path: Path) -> None:
    services_sh = tmp_path / "services.sh"
    services_sh.write_text(
        SERVICES_SH.read_text(encoding="utf-8").replace("ALL=(org ", "ALL=(reporter org "), encoding="utf-8"
    )
    units = tmp_path / "systemd"
    shutil.copytree(SYSTEMD, units)
    template = units / "hongling@.service"
    template.write_text(
        template.read_text(encoding="utf-8")
        .replace("Restart=on-failure", "Restart=no")
        .replace("EnvironmentFile=/etc/hongling/secrets.env", "EnvironmentFile=-/etc/hongling/secrets.env"),
        encoding="utf-8",
    )
    problems = systemd_problems(units, services_sh)
    assert "hongling.target: does not want hongling@services.reporter.service (reporter of services.sh)" in problems
    assert "services.sh: reporter runs services.reporter, which is no module of the repository" in problems
    assert "hongling@.service: Restart=['no'], not on-failure" in problems
    assert any(p.startswith("hongling@.service: the secrets' EnvironmentFile") for p in problems), problems


def test_the_secrets_file_is_never_in_the_repository() -> None:
    assert not list(SYSTEMD.rglob("secrets.env*"))
    example = (SYSTEMD / "hongling.env.example").read_text(encoding="utf-8")
    assert "SECRET" not in example and "KEY=" not in example


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_every_unit(tmp_path: Path) -> None:
    modules = processes_of_services_sh(SERVICES_SH).values()
    units = render_units(SYSTEMD, tmp_path, modules)
    dropins = SYSTEMD / "hongling@services.projector.service.d"
    shutil.copytree(dropins, tmp_path / dropins.name)
    run = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"SYSTEMD_LOG_LEVEL": "warning", "PATH": "/usr/bin:/bin", "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )
    assert (run.returncode, run.stdout + run.stderr) == (0, "")
    assert len(units) == len(list(modules)) + 3  # the instances, hongling.target, -stack and -init
    assert (REPO / ".venv" / "bin" / "python").is_file()  # what they run, inside bash -c (not checked by verify)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_verify_catches_a_unit_it_could_not_run(tmp_path: Path) -> None:
    units = render_units(SYSTEMD, tmp_path, ["services.org"])
    template = tmp_path / "hongling@.service"
    template.write_text(template.read_text(encoding="utf-8").replace("Restart=on-failure", "Restart=sometimes"))
    (tmp_path / "hongling-init.service").write_text(
        (tmp_path / "hongling-init.service")
        .read_text(encoding="utf-8")
        .replace("ExecStart=/bin/bash", "ExecStart=/bin/bsh")
    )
    run = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)], capture_output=True, text=True, timeout=120
    )
    assert "Failed to parse service restart specifier" in run.stderr
    assert "Command /bin/bsh is not executable" in run.stderr
