"""Wall and CPU seconds of a block, and how busy the rest of the machine was meanwhile (for the benchmarks)."""

from __future__ import annotations

import os
import time


class Stopwatch:
    """Wall and process CPU seconds of a block, and what else kept the cores busy meanwhile.

    ``others_cores``: cores other processes kept busy on average; ``steal_cores``:
    cores the hypervisor gave to other machines (both 0 on a quiet machine).
    With ``children=True`` the CPU seconds include those of child processes
    that ended inside the block (decoding processes).
    """

    def __init__(self, *, children: bool = False):
        self.children = children

    def _cpu(self) -> float:
        cpu = time.process_time()
        if self.children:
            import resource

            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu += usage.ru_utime + usage.ru_stime
        return cpu

    def __enter__(self) -> "Stopwatch":
        self.stat0 = cpu_stat()
        self.wall0, self.cpu0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = self._cpu() - self.cpu0
        stat = cpu_stat()
        self.others_cores = self.steal_cores = None
        if stat is not None and self.stat0 is not None and self.wall > 0:
            busy, steal = (a - b for a, b in zip(stat, self.stat0))
            self.others_cores = max(0.0, busy - self.cpu) / self.wall
            self.steal_cores = steal / self.wall


def cpu_stat() -> tuple[float, float] | None:
    """(busy, stolen) CPU seconds of the whole machine since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick
