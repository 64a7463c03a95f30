"""Rendering one community's month in every channel: the publication channels (services/publication/channels)
on samples.monthly(1000) — a month with 1,000 handled issues — and, beside it, the quarter's boards and the
subdistrict's report. Prints the milliseconds per channel (the best of HONGLING_BENCH_REPEAT runs, default 3,
after one warm-up that loads WeasyPrint and the fonts; wall clock, and this process's CPU time, which a busy
shared machine inflates less), the bytes of each output, and whether a second render
gave the same bytes.

Render-only: needs no stack (deploy/local/test.sh bench runs it beside the others; alone:
`.venv/bin/python bench/publication_render.py`). The issue's goal: one community's month in every channel
well under 5 s.
"""

from __future__ import annotations

import os
import time

from services.publication import samples
from services.publication.channels import CHANNELS, Edition, render

REPEAT = int(os.environ.get("HONGLING_BENCH_REPEAT", "3"))
ISSUES = int(os.environ.get("HONGLING_BENCH_ISSUES", "1000"))


def main() -> None:
    contents = [
        (f"monthly({ISSUES})", dict(samples.monthly(ISSUES))),
        ("boards", dict(samples.boards())),
        ("report", dict(samples.report())),
    ]
    edition = Edition("monthly:c-daimiao-01:2026-11:v1", 1, draft=False)
    render(contents[1][1], "pdf_a4", edition)  # warm-up: WeasyPrint, Pango and the CJK fonts load once
    for name, content in contents:
        total = 0.0
        print(f"{name}: channel       best ms    cpu ms     bytes  parts  same bytes", flush=True)
        for channel in CHANNELS[str(content["kind"])]:
            times, cpu, outputs = [], [], []
            for _ in range(max(1, REPEAT)):
                t0, c0 = time.perf_counter(), time.process_time()
                r = render(content, channel, edition)
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                outputs.append(r.data)
            best = min(times)
            total += best
            same = "yes" if len(set(outputs)) == 1 else "NO"
            print(
                f"  {channel:<18} {best:>9.0f} {min(cpu):>9.0f} {len(outputs[0]):>9}  {len(r.parts):>5}  {same}",
                flush=True,
            )
        print(f"  {'every channel':<18} {total:>9.0f} ms", flush=True)


if __name__ == "__main__":
    main()
