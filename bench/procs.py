"""Process helpers of the harness: the verifier as a child process, and /proc readings.

psutil is not a dependency: CPU time comes from ``/proc/<pid>/stat`` (utime + stime, in clock
ticks) and memory from ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``). Only processes this
harness started are ever signalled, by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
FLK = Path(sys.executable).with_name("flk")


def parse_stat(text: str) -> tuple[int, int]:
    """(ppid, utime + stime ticks) from the text of ``/proc/<pid>/stat``.

    The command name (field 2) may contain spaces and parentheses, so fields are counted
    from the last ``)``.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime/stime are fields 14/15.
    return int(rest[1]), int(rest[11]) + int(rest[12])


def parse_status_kb(text: str, key: str) -> int:
    """A ``kB`` value (e.g. ``VmRSS``) from the text of ``/proc/<pid>/status``; 0 if absent."""
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def descendants(root: int) -> list[int]:
    """``root`` and every live descendant (found by scanning ``/proc`` for parent ids)."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        text = _read(f"/proc/{name}/stat")
        if text is None:
            continue
        ppid, _ = parse_stat(text)
        parents.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


@dataclass(frozen=True)
class TreeSample:
    """CPU ticks and memory of a process tree at one instant."""

    at: float
    ticks: int
    rss_kb: int
    """Sum of VmRSS over the tree."""
    hwm_kb: dict[int, int]
    """Peak RSS (VmHWM) per pid."""


def sample_tree(root: int) -> TreeSample:
    """CPU ticks and RSS summed over ``root``'s tree, with each process's peak RSS."""
    ticks = rss = 0
    hwm: dict[int, int] = {}
    for pid in descendants(root):
        stat = _read(f"/proc/{pid}/stat")
        status = _read(f"/proc/{pid}/status")
        if stat is None or status is None:
            continue
        ticks += parse_stat(stat)[1]
        rss += parse_status_kb(status, "VmRSS")
        hwm[pid] = parse_status_kb(status, "VmHWM")
    return TreeSample(time.monotonic(), ticks, rss, hwm)


@dataclass(frozen=True)
class MachineSample:
    """Busy CPU ticks of the whole machine (every process, the load generator included)."""

    at: float
    busy_ticks: int


def parse_proc_stat(text: str) -> int:
    """Busy ticks (all but idle and iowait) from the ``cpu`` line of ``/proc/stat``."""
    fields = [int(x) for x in text.splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


def sample_machine() -> MachineSample:
    """Busy ticks of the machine now."""
    return MachineSample(time.monotonic(), parse_proc_stat(_read("/proc/stat") or "cpu 0"))


def machine_cores(before: MachineSample, after: MachineSample) -> float:
    """Average busy cores of the machine between two samples (nproc = fully saturated)."""
    wall = after.at - before.at
    return (after.busy_ticks - before.busy_ticks) / CLK_TCK / wall if wall > 0 else 0.0


def cpu_cores(before: TreeSample, after: TreeSample) -> float:
    """Average cores used between two samples (1.0 = one core busy)."""
    wall = after.at - before.at
    return (after.ticks - before.ticks) / CLK_TCK / wall if wall > 0 else 0.0


class ServerProc:
    """``flk serve`` started by the harness, stopped by its PID (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        port: int,
        workers: int,
        env: Mapping[str, str],
        log_path: Path,
        data_dir: Path,
        *,
        wrapper: Sequence[str] | None = None,
    ) -> None:
        self.wrapper = list(wrapper or [])
        self.port = port
        self.workers = workers
        self.env = dict(env)
        self.log_path = log_path
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait for ``GET /ready`` == 200; raise RuntimeError with the log's last
        line when the server exits or does not get ready in time."""
        env = {**os.environ, **self.env, "DATA_DIR": str(self.data_dir), "LOG_LEVEL": "WARNING"}
        cmd = [
            *self.wrapper,
            str(FLK),
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.last_log_line()}")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready within {timeout}s: {self.last_log_line()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            text: str = resp.read().decode()
            return text

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        target = proc.pid
        if self.wrapper:  # signal the server itself, not the tracer that started it
            target = next((p for p in descendants(proc.pid) if p != proc.pid), proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)
