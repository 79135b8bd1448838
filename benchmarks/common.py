"""Shared by the benchmark scripts: machine description, peak RSS, appending to RESULTS.md."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def record(title: str, body: str, out: Path | None = RESULTS) -> None:
    """Print a result section and append it, with date, machine and command, to RESULTS.md."""
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    text = (f"\n## {title}\n\n- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}\n- machine: {machine()}\n"
            f"- command: `{cmd}`\n\n{body.strip()}\n")
    print(text)
    if out is not None:
        with open(out, "a") as fh:
            fh.write(text)
