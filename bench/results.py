"""`make bench`'s one table (issue 20): every figure with its goal and the ratio, measured side by side in one run.

Each benchmark records its key figures with `record` (benchlib re-exports it); deploy/local/test.sh bench prints
them all in one table at the end (`python bench/results.py table`): a full path beside its raw baseline (the
same database's insert rate, the same broker's produce rate), so the ratio shows what the path costs on top.
Kept apart from benchlib so that printing the table imports nothing of the stack's.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

RESULTS_NAME = "bench-results.jsonl"


def results_path() -> str:
    """Where this run's figures go: HONGLING_BENCH_RESULTS, else bench-results.jsonl in the state dir (a fresh
    one per `make bench`: deploy/local/test.sh starts from an empty state dir)."""
    given = os.environ.get("HONGLING_BENCH_RESULTS")
    if given:
        return given
    return os.path.join(os.environ.get("HONGLING_STATE_DIR", ".local/state"), RESULTS_NAME)


def record(
    name: str,
    value: float,
    unit: str,
    *,
    goal: float | None = None,
    better: str = "lower",
    baseline: str | None = None,
    path: str | None = None,
) -> None:
    """Record one figure of this benchmark: its name, value and unit; its goal if it has one (`better`:
    "lower" — the value must stay at or under the goal — or "higher"); `baseline`: the name of the raw figure
    this one is a full path above (its table row shows value / baseline). Appended as a JSON line."""
    if better not in ("lower", "higher"):
        raise ValueError("better must be 'lower' or 'higher'")
    row = {
        "bench": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "",
        "name": name,
        "value": float(value),
        "unit": unit,
        "goal": None if goal is None else float(goal),
        "better": better,
        "baseline": baseline,
    }
    target = path or results_path()
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_results(path: str | None = None) -> list[dict[str, Any]]:
    """The recorded figures, in the order recorded (a figure recorded twice: the last one counts, in place of
    the first)."""
    rows: dict[str, dict[str, Any]] = {}
    try:
        with open(path or results_path(), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    rows[row["name"]] = row
    except FileNotFoundError:
        return []
    return list(rows.values())


def goal_ratio(value: float, goal: float | None, better: str) -> float | None:
    """How the value stands against its goal as one factor, >= 1 when met: goal / value for "lower" (a p99 of
    25 ms against 50 ms: 2.0), value / goal for "higher" (1,500 events/s against 1,000: 1.5)."""
    if goal is None:
        return None
    if better == "lower":
        return float("inf") if value <= 0 else goal / value
    return float("inf") if goal <= 0 else value / goal


def _num(value: float) -> str:
    if value == float("inf"):
        return "inf"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as one text table: figure | measured | goal | ratio | ok | of raw (value / its baseline's)."""
    values = {r["name"]: r["value"] for r in rows}
    head = ("figure", "measured", "goal", "ratio", "ok", "of raw")
    body: list[tuple[str, ...]] = []
    for r in rows:
        ratio = goal_ratio(r["value"], r["goal"], r["better"])
        goal = "" if r["goal"] is None else ("<= " if r["better"] == "lower" else ">= ") + f"{_num(r['goal'])}"
        base = values.get(r.get("baseline") or "")
        body.append(
            (
                r["name"],
                f"{_num(r['value'])} {r['unit']}",
                f"{goal} {r['unit']}" if goal else "",
                "" if ratio is None else f"{_num(ratio)}x",
                "" if ratio is None else ("yes" if ratio >= 1 else "NO"),
                "" if not base else f"{r['value'] / base:.2f}",
            )
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    met = sum(1 for r in rows if (x := goal_ratio(r["value"], r["goal"], r["better"])) is not None and x >= 1)
    goals = sum(1 for r in rows if r["goal"] is not None)
    lines.append(f"{len(rows)} figures, {goals} with a goal: {met} met, {goals - met} missed")
    return "\n".join(lines)


if __name__ == "__main__":
    # `python bench/results.py table [results.jsonl]`: the run's table (deploy/local/test.sh bench, at the end).
    # (Without arguments nothing: test.sh's `bench/*.py` runs this file too.)
    if sys.argv[1:2] == ["table"]:
        found = read_results(sys.argv[2] if len(sys.argv) > 2 else None)
        print(table(found) if found else f"no figures recorded in {results_path()}")
