"""What the benchmarks share about the machine, with no heavy imports (a load-test client or a
memory baseline process must not pull in torch for them): the log line, the machine's busy CPU
seconds (to tell whether others used the CPUs during a measurement) and the CPU's name."""

from __future__ import annotations

import contextlib
import os
import platform
import sys


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs of the machine have spent busy since boot (None off Linux)."""
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    return cpu
