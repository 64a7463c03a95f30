"""`make bench`'s one table (bench/results.py: record, read_results, table; benchlib re-exports them) and the
idle-cost measurement (bench/idle_cost.py over benchlib.cpu_seconds), which must read real CPU figures from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402
import idle_cost  # noqa: E402
import results  # noqa: E402


def test_recorded_figures_come_back_in_order_and_a_figure_recorded_again_replaces_the_first(tmp_path: Path) -> None:
    path = str(tmp_path / "results.jsonl")
    results.record("a: p99", 40.0, "ms", goal=50, path=path)
    results.record("b: rate", 900.0, "events/s", goal=1000, better="higher", path=path)
    results.record("a: p99", 60.0, "ms", goal=50, path=path)
    rows = results.read_results(path)
    assert [(r["name"], r["value"]) for r in rows] == [("a: p99", 60.0), ("b: rate", 900.0)]
    assert rows[1]["better"] == "higher" and rows[1]["goal"] == 1000.0 and rows[1]["unit"] == "events/s"


def test_the_results_file_defaults_to_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONGLING_BENCH_RESULTS", raising=False)
    monkeypatch.setenv("HONGLING_STATE_DIR", str(tmp_path))
    results.record("x", 1.0, "ms")
    assert results.results_path() == str(tmp_path / "bench-results.jsonl")
    assert [r["name"] for r in results.read_results()] == ["x"]


def test_record_refuses_an_unknown_direction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="better"):
        results.record("x", 1.0, "ms", better="smaller", path=str(tmp_path / "r.jsonl"))


def test_goal_ratio_is_at_least_one_exactly_when_the_goal_is_met() -> None:
    assert results.goal_ratio(25, 50, "lower") == 2.0
    assert results.goal_ratio(100, 50, "lower") == 0.5
    assert results.goal_ratio(1500, 1000, "higher") == 1.5
    assert results.goal_ratio(500, 1000, "higher") == 0.5
    assert results.goal_ratio(0, 0, "lower") == float("inf")  # "0 events missing", goal 0: met
    assert results.goal_ratio(3, 0, "lower") == 0.0
    assert results.goal_ratio(3, None, "lower") is None


def test_the_table_shows_each_figure_with_its_goal_ratio_verdict_and_share_of_its_baseline() -> None:
    rows = [
        {"name": "raw: insert", "value": 200.0, "unit": "docs/s", "goal": None, "better": "higher", "baseline": None},
        {"name": "full path", "value": 100.0, "unit": "issues/s", "goal": 50.0, "better": "higher",
         "baseline": "raw: insert"},
        {"name": "whistle p99", "value": 80.0, "unit": "ms", "goal": 50.0, "better": "lower", "baseline": None},
    ]  # fmt: skip
    text = results.table(rows)
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["figure", "measured", "goal", "ratio", "ok", "of raw"]
    cells = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in lines[2:-1]}
    assert cells["raw: insert"][1:] == ["200 docs/s", "", "", "", ""]
    assert cells["full path"][1:] == ["100 issues/s", ">= 50.0 issues/s", "2.00x", "yes", "0.50"]
    assert cells["whistle p99"][1:5] == ["80.0 ms", "<= 50.0 ms", "0.62x", "NO"]
    assert lines[-1] == "3 figures, 2 with a goal: 1 met, 1 missed"
    # Columns line up: every row has its separators at the same places as the header.
    assert len({tuple(i for i, ch in enumerate(line) if ch == "|") for line in lines[:-1] if "|" in line}) == 1


def test_the_command_line_prints_the_runs_table(tmp_path: Path) -> None:
    path = str(tmp_path / "results.jsonl")
    results.record("idle: the whole stack", 2.5, "% core", goal=3.0, path=path)
    out = subprocess.run(
        [sys.executable, str(BENCH / "results.py"), "table", path], capture_output=True, text=True, check=True
    ).stdout
    assert "idle: the whole stack" in out and "2.50 % core" in out and "1.20x" in out and "yes" in out
    # Without "table" (test.sh runs every bench/*.py, this file too) it does nothing.
    quiet = subprocess.run([sys.executable, str(BENCH / "results.py")], capture_output=True, text=True, check=True)
    assert quiet.stdout == ""


def _burn(seconds: float) -> None:
    until = time.process_time() + seconds
    x = 0
    while time.process_time() < until:
        x += 1


def test_cpu_seconds_reads_this_process_from_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONGLING_STATE_DIR", str(tmp_path))  # no run dir: only this process
    before = benchlib.cpu_seconds()["bench (client)"]
    _burn(0.4)
    used = benchlib.cpu_seconds()["bench (client)"] - before
    # /proc counts in clock ticks (1/100 s): the work shows, give or take a few ticks.
    assert 0.3 <= used <= 2.0


def test_idle_cost_counts_each_stack_process_with_its_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A "service" whose pid file is in the run dir and a child it forked both burn CPU: the measurement finds
    the work under the service's name (PostgreSQL works in the backends its postmaster forks)."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("HONGLING_STATE_DIR", str(tmp_path))
    script = (
        "import subprocess, sys, time\n"
        "burn = 'import time\\nu = time.process_time() + 0.6\\nwhile time.process_time() < u: pass\\ntime.sleep(30)'\n"
        "child = subprocess.Popen([sys.executable, '-c', burn])\n"
        "u = time.process_time() + 0.6\n"
        "while time.process_time() < u: pass\n"
        "print('ready', flush=True)\n"
        "child.wait()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        (run / "fake.pid").write_text(str(proc.pid))
        before = {"fake": 0.0}
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while (after := benchlib.cpu_seconds()).get("fake", 0.0) < 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert after["fake"] >= 1.0  # its own 0.6 s and its child's 0.6 s
        shares = idle_cost.shares(before, after, 10.0)
        assert "bench (client)" not in shares  # the measuring process is left out
        assert shares["fake"] == pytest.approx(100 * after["fake"] / 10.0)
    finally:
        children = [int(pid) for pid in os.popen(f"pgrep -P {proc.pid}").read().split()]
        for pid in children:
            os.kill(pid, 9)
        proc.kill()
        proc.wait()


def test_shares_are_percent_of_one_core_largest_first() -> None:
    before = {"kafka": 10.0, "dispatch": 5.0, "bench (client)": 1.0}
    after = {"kafka": 10.6, "dispatch": 6.2, "ferretdb": 0.3, "bench (client)": 9.0}
    shares = idle_cost.shares(before, after, 60.0)
    assert list(shares) == ["dispatch", "kafka", "ferretdb"]
    assert shares["dispatch"] == pytest.approx(2.0) and shares["kafka"] == pytest.approx(1.0)
