"""Publishing checkpoints to the anchor sinks on a thread of its own, off the commit path.

The writer hands every new checkpoint to :meth:`AnchorPublisher.offer` and goes on: a slow or
dead sink (an HTTP endpoint that takes 5 s, a witness that is down) never stalls an append.
The publisher thread delivers each checkpoint to every sink in order, retries a failing sink
with capped exponential backoff and full jitter, and records each acceptance in the ledger
(``{"type":"anchored","segment":...,"sinks":[NAME]}``). What is still pending at shutdown is
found unanchored in the ledger and offered again at the next start.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fractal_lba.audit.anchors import AnchorSink, LocalAnchorFile, sink_name
from fractal_lba.audit.errors import AuditError
from fractal_lba.audit.segments import utc_iso

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
RETRY_MAX_S = 60.0


@dataclass
class _Pending:
    segment: str
    note: str
    done: set[str] = field(default_factory=set)


class AnchorPublisher:
    """Delivers checkpoint notes to ``sinks`` from its own daemon thread (see module doc).

    With no sinks a checkpoint is recorded as anchored by ``local`` (the ledger itself) at
    once. ``on_failure(sink_name)`` is called for every failed attempt (metrics).
    """

    def __init__(
        self,
        ledger: LocalAnchorFile,
        sinks: Sequence[AnchorSink],
        *,
        clock: Callable[[], float] = time.time,
        on_failure: Callable[[str], None] | None = None,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.ledger = ledger
        self.sinks = list(sinks)
        self.clock = clock
        self._on_failure = on_failure
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._busy = False
        self._stop = False
        self._wake = False
        self._thread: threading.Thread | None = None
        self._delay = retry_min_s

    @property
    def pending(self) -> int:
        """Checkpoints not yet accepted by every sink."""
        with self._cond:
            return len(self._queue)

    def start(self) -> None:
        """Start the publishing thread (idempotent)."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="audit-anchors", daemon=True)
            self._thread.start()

    def offer(self, segment: str, note: str) -> None:
        """Queue a checkpoint for every sink; returns at once."""
        with self._cond:
            self._queue.append(_Pending(segment, note))
            self._wake = True
            self._cond.notify_all()

    def retry_now(self) -> None:
        """Skip the current backoff wait (e.g. ``flk worm seal``, or a test)."""
        with self._cond:
            self._wake = True
            self._delay = self._retry_min
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued (True) or ``timeout`` seconds passed (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Give the queue up to ``timeout`` seconds to drain, then stop the thread."""
        if self._thread is None:
            return
        self.retry_now()
        self.wait_idle(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=max(timeout, 1.0))
        self._thread = None

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not (self._queue and self._wake):
                    self._cond.wait()
                if self._stop:
                    return
                self._wake = False
                self._busy = True
                batch = list(self._queue)
            ok = self._publish(batch)
            with self._cond:
                self._busy = False
                self._queue = [p for p in self._queue if not _complete(p, self.sinks)]
                if ok:
                    self._delay = self._retry_min
                    if self._queue:
                        self._wake = True
                    self._cond.notify_all()
                    continue
                # Capped exponential backoff with full jitter before the next attempt.
                wait = random.uniform(0, self._delay)
                self._delay = min(self._retry_max, self._delay * 2)
                self._cond.notify_all()
                if not self._stop and not self._wake:
                    self._cond.wait(wait)
                self._wake = True

    def _publish(self, batch: list[_Pending]) -> bool:
        """Try every sink for each pending checkpoint, in order; False after a failure."""
        ok = True
        for item in batch:
            accepted: list[str] = []
            for sink in self.sinks:
                name = sink_name(sink)
                if name in item.done:
                    continue
                try:
                    sink.publish(item.note)
                except AuditError as exc:
                    ok = False
                    if self._on_failure is not None:
                        self._on_failure(name)
                    log.warning(
                        "checkpoint not anchored yet (will retry)",
                        extra={"segment": item.segment, "sink": name, "error": str(exc)},
                    )
                    continue
                accepted.append(name)
            if not self.sinks:
                accepted = ["local"]
            if accepted and not self._record(item.segment, accepted):
                return False
            item.done.update(accepted)
            if not ok:
                return False  # keep checkpoint order per sink: later ones wait for this one
        return ok

    def _record(self, segment: str, names: list[str]) -> bool:
        try:
            self.ledger.append(
                {
                    "type": "anchored",
                    "segment": segment,
                    "sinks": names,
                    "time": utc_iso(self.clock()),
                }
            )
        except AuditError as exc:
            log.warning("cannot record an anchoring in the ledger (will retry): %s", exc)
            return False
        return True


def _complete(item: _Pending, sinks: Sequence[AnchorSink]) -> bool:
    if not sinks:
        return "local" in item.done
    return all(sink_name(s) in item.done for s in sinks)
