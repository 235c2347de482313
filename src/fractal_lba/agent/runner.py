"""The agent loop: scan the ``--in`` paths, queue what is new, deliver what is pending.

``once``: scan, deliver until the outbox is empty, return. Otherwise scan every
``interval`` seconds for new or changed files (a file is known by path, size and mtime;
unreadable files are skipped and tried again when they change) until stopped.

:class:`StopSignal` turns SIGTERM / SIGINT into a stop at a safe point: a sleep in progress
is cut short, otherwise the current step (an HTTP request, a durable ack) completes first.
Raising out of a signal handler anywhere else could interrupt the outbox between its
durable write and its in-memory update.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Protocol

from fractal_lba.agent.delivery import Deliverer, DeliveryListener
from fractal_lba.agent.ingest import (
    BuildSpec,
    IngestReporter,
    Stamp,
    enqueue_files,
    expand_inputs,
    file_stamp,
)
from fractal_lba.agent.outbox import Outbox


class Stopped(Exception):
    """A stop was requested while the loop was sleeping."""


class StopSignal:
    """Stop requests from signals; :meth:`sleep` is the only place they interrupt."""

    def __init__(self) -> None:
        self.requested = False
        self._sleeping = False

    def request(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        """Ask for a stop (the signal handler): cuts a sleep short, else noted for later."""
        self.requested = True
        if self._sleeping:
            raise Stopped

    def __call__(self) -> bool:
        """Whether a stop was requested (checked between steps)."""
        return self.requested

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` unless a stop is requested before or during it (Stopped)."""
        self._sleeping = True
        try:
            if self.requested:
                raise Stopped
            time.sleep(seconds)
        finally:
            self._sleeping = False

    @contextmanager
    def installed(self) -> Iterator[StopSignal]:
        """Handle SIGTERM and SIGINT with :meth:`request` inside the block."""
        old = {sig: signal.signal(sig, self.request) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


class RunReporter(IngestReporter, DeliveryListener, Protocol):
    """What the caller hears while the loop runs (files, then delivery progress)."""

    def delivery_started(self, pending: int) -> None:
        """A delivery round starts with ``pending`` entries."""

    def delivery_finished(self) -> None:
        """The delivery round is over."""


class AgentRunner:
    """Queue PCS built from ``inputs`` into ``outbox`` and deliver them with ``deliverer``."""

    def __init__(
        self,
        outbox: Outbox,
        deliverer: Deliverer,
        reporter: RunReporter,
        *,
        inputs: Sequence[str | Path] = (),
        spec: BuildSpec | None = None,
        tenant_id: str | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if inputs and spec is None:
            raise ValueError("inputs need a BuildSpec")
        self.outbox = outbox
        self.deliverer = deliverer
        self.reporter = reporter
        self.inputs = list(inputs)
        self.spec = spec
        self.tenant_id = tenant_id
        self.dead = 0
        self._stop = stop
        self._seen: set[Stamp] = set()

    def scan(self, *, strict: bool) -> int:
        """Queue the files not seen yet (or changed); returns how many PCS were new."""
        if not self.inputs or self.spec is None:
            return 0
        fresh = [p for p in expand_inputs(self.inputs) if file_stamp(p) not in self._seen]
        if not fresh and not strict:
            return 0
        created = enqueue_files(
            self.outbox,
            fresh,
            self.spec,
            tenant_id=self.tenant_id,
            reporter=self.reporter,
            strict=strict,
        )
        self._seen.update(file_stamp(p) for p in fresh)
        return created

    def deliver(self, *, until: float | None = None) -> int:
        """Deliver what is pending (with ``until``: stop waiting for retries at that clock
        time, so the watch loop scans again); returns how many were dead-lettered."""
        pending = self.outbox.stats().pending
        if not pending:
            return 0
        self.reporter.delivery_started(pending)
        try:
            report = self.deliverer.deliver_pending(self.reporter, until=until)
        finally:
            self.reporter.delivery_finished()
        self.outbox.compact()  # drop sealed segments with nothing pending: stays bounded
        self.dead += report.dead
        return report.dead

    def run(
        self,
        *,
        once: bool,
        interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Scan and deliver once (``once``), or every ``interval`` seconds until stopped.

        A :class:`Stopped` raised by ``sleep`` (or the deliverer's sleep) ends the run.
        """
        try:
            while True:
                self.scan(strict=once)
                self.deliver(until=None if once else self.deliverer.clock() + interval)
                if once or self._stop():
                    return
                sleep(interval)
        except Stopped:
            return
