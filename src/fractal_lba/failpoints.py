"""Failpoints: named places where a test injects a crash, an I/O error or a delay.

In the style of etcd's gofail and Rust's fail-rs. A process is armed once at startup from
``FLK_FAILPOINTS`` (read by the settings loader, :func:`fractal_lba.config.failpoints_from_env`),
for example::

    FLK_FAILPOINTS="inbox.after_admit=crash;audit.before_write=3*off->enospc"

Each point takes a chain of tasks separated by ``->``; a task is ``[COUNT*]ACTION[(ARG)]``.
A task with a count runs that many hits and then hands over to the next one; the last task
without a count applies to every later hit. Actions:

``off``       nothing happens (useful to skip the first N hits)
``crash``     the process SIGKILLs itself (a real ``kill -9``: no cleanup, no flush)
``enospc``    raise ``OSError(ENOSPC)``, as a full disk would
``eio``       raise ``OSError(EIO)``
``erofs``     raise ``OSError(EROFS)``, as a read-only remount would
``sleep(MS)`` block the calling thread for MS milliseconds
``panic``     raise :class:`FailpointPanic` (an unexpected bug in that place)

Unarmed (the production case) :func:`hit` is one global test and a return. Every point is
declared in :data:`POINTS`, so a typo in ``FLK_FAILPOINTS`` stops startup instead of silently
testing nothing.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
import time
from dataclasses import dataclass

from fractal_lba.errors import ConfigError

POINTS: dict[str, str] = {
    "inbox.after_admit": "submit path, right after the request's WAL append is durable",
    "wal.before_write": "WalLog.append, before the batch is written",
    "wal.after_write": "WalLog.append, after write(), before fdatasync",
    "wal.after_fsync": "WalLog.append, after the batch is durable",
    "wal.repair": "WalLog.repair, before a failed append's bytes are cut off",
    "audit.before_write": "audit writer, before a batch of entries is written",
    "audit.after_write": "audit writer, after write(), before fsync",
    "audit.after_fsync": "audit writer, after a batch of entries is durable",
    "audit.before_truncate": "audit writer, before a failed write is truncated back",
    "audit.ledger_write": "audit anchors file, before a record (checkpoint, anchoring) is written",
    "replay.after_audit": "replay, after a replayed request's audit entry, before its marker",
    "agent.after_enqueue": "agent, after a PCS is durable in the outbox",
    "agent.after_send": "agent, after the verifier answered, before the ack is durable",
    "agent.dlq_requeue_mid": "agent, requeue: the new outbox entries are durable, before "
    "each dead letter file is removed",
    "agent.dlq_drop_mid": "agent, drop: the drop records are durable, before each dead "
    "letter file is removed",
}
"""Every failpoint of the code base and where it sits. Add a line when you add a point."""

ENV = "FLK_FAILPOINTS"

_ERRNO = {"enospc": errno.ENOSPC, "eio": errno.EIO, "erofs": errno.EROFS}
_ACTIONS = frozenset({"off", "crash", "panic", "sleep", *_ERRNO})
_TASK = re.compile(r"^(?:(\d+)\*)?([a-z]+)(?:\((\d+)\))?$")


class FailpointPanic(RuntimeError):
    """Raised by a ``panic`` failpoint: stands for a bug at that place."""


@dataclass
class _Task:
    action: str
    arg: int
    count: int | None  # None: forever


@dataclass
class _Point:
    tasks: list[_Task]
    hits: int = 0


_armed = False
_points: dict[str, _Point] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, list[tuple[str, int, int | None]]]:
    """``FLK_FAILPOINTS`` text -> {point: [(action, arg, count)]}; raise ConfigError."""
    out: dict[str, list[tuple[str, int, int | None]]] = {}
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, chain = part.partition("=")
        name = name.strip()
        if not sep or not chain.strip():
            raise ConfigError(f"{ENV}: '{name}' needs '=ACTION'")
        if name not in POINTS:
            raise ConfigError(f"{ENV}: unknown failpoint '{name}' (known: {', '.join(POINTS)})")
        tasks: list[tuple[str, int, int | None]] = []
        for raw in chain.split("->"):
            m = _TASK.match(raw.strip())
            if m is None or m.group(2) not in _ACTIONS:
                raise ConfigError(f"{ENV}: '{name}': bad task '{raw.strip()}'")
            count, action, arg = m.group(1), m.group(2), m.group(3)
            if (action == "sleep") != (arg is not None):
                raise ConfigError(f"{ENV}: '{name}': only sleep takes an argument, and needs one")
            tasks.append((action, int(arg or 0), None if count is None else int(count)))
        out[name] = tasks
    return out


def configure(spec: str | None) -> None:
    """Arm the failpoints of ``spec`` (``None`` or empty disarms all); raise ConfigError."""
    global _armed
    parsed = parse(spec or "")
    with _lock:
        _points.clear()
        for name, tasks in parsed.items():
            _points[name] = _Point([_Task(a, arg, c) for a, arg, c in tasks])
        _armed = bool(_points)


def armed() -> bool:
    """Whether any failpoint is armed in this process."""
    return _armed


def hits(name: str) -> int:
    """How often an armed point was reached (0 when it is not armed)."""
    point = _points.get(name)
    return 0 if point is None else point.hits


def hit(name: str) -> None:
    """Reach failpoint ``name``: do what it is armed with (nothing when unarmed)."""
    if not _armed:
        return
    point = _points.get(name)
    if point is None:
        return
    with _lock:
        point.hits += 1
        task = _current(point)
    if task is None or task.action == "off":
        return
    if task.action == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif task.action == "sleep":
        time.sleep(task.arg / 1000)
    elif task.action == "panic":
        raise FailpointPanic(f"failpoint {name}")
    else:
        code = _ERRNO[task.action]
        raise OSError(code, f"{os.strerror(code)} (failpoint {name})")


def _current(point: _Point) -> _Task | None:
    """The task that applies to the latest hit; consumes counted tasks."""
    while point.tasks:
        task = point.tasks[0]
        if task.count is None:
            return task
        if task.count > 0:
            task.count -= 1
            return task
        point.tasks.pop(0)
    return None
