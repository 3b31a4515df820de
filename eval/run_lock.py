"""One writer per run directory.

Two ``sleuth eval`` on the same ``--out`` would both run every question
(double cost) and overwrite each other's traces. The first takes an
exclusive lock on ``RUN_DIR/.lock`` (an OS file lock, released by the kernel
when the process ends, even on SIGKILL) and writes who holds it beside it,
so the second can say which process to wait for.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from sleuth.errors import ConfigError

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder.json"


class RunDirectoryLock:
    """``with RunDirectoryLock(run_dir):`` holds the run directory for this process, or raises ``ConfigError``."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._lock = FileLock(str(self.run_dir / LOCK_FILE), timeout=0)

    def __enter__(self) -> "RunDirectoryLock":
        try:
            self._lock.acquire()
        except Timeout:
            raise ConfigError(f"{self.run_dir} is in use by {self._holder()}; wait for it to finish or use another --out") from None
        except OSError as exc:
            raise ConfigError(f"{self.run_dir}: cannot lock the run directory ({exc.strerror or exc})") from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            (self.run_dir / HOLDER_FILE).write_text(json.dumps(holder), encoding="utf-8")
        except OSError:
            pass  # who holds it is a courtesy for the next process; the lock itself is what counts
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            (self.run_dir / HOLDER_FILE).unlink(missing_ok=True)
        except OSError:
            pass
        self._lock.release()

    def _holder(self) -> str:
        try:
            holder = json.loads((self.run_dir / HOLDER_FILE).read_text(encoding="utf-8"))
            return f"another sleuth process (pid {holder['pid']} on {holder['host']}, since {holder['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another sleuth process"
