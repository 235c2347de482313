"""The agent loop: scan the ``--in`` paths, queue what is new, deliver what is pending.

``once``: scan, deliver until the outbox is empty, return. Otherwise scan every
``interval`` seconds for new or changed files (a file is known by path, size and mtime;
unreadable files are skipped and tried again when they change) until the caller stops it
(the CLI raises out of ``sleep`` on SIGTERM).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from fractal_lba.agent.delivery import Deliverer, Result
from fractal_lba.agent.ingest import (
    BuildSpec,
    IngestReporter,
    Stamp,
    enqueue_files,
    expand_inputs,
    file_stamp,
)
from fractal_lba.agent.outbox import Outbox


class RunReporter(IngestReporter, Protocol):
    """What the caller hears while the loop runs (files, then delivery progress)."""

    def delivery_started(self, pending: int) -> None:
        """A delivery round starts with ``pending`` entries."""

    def delivered(self, result: Result) -> None:
        """One entry was acked or dead-lettered."""

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

    def deliver(self) -> int:
        """Deliver everything pending; returns how many were dead-lettered."""
        pending = self.outbox.stats().pending
        if not pending:
            return 0
        self.reporter.delivery_started(pending)
        try:
            report = self.deliverer.deliver_pending(self.reporter.delivered)
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
        """Scan and deliver once (``once``), or forever every ``interval`` seconds."""
        while True:
            self.scan(strict=once)
            self.deliver()
            if once:
                return
            sleep(interval)
