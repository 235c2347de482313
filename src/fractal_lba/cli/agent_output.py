"""What ``flk agent`` prints: file lines, retry lines, the progress bar, dead-letter summaries.

Retry lines are the agent library's INFO log records (logger ``fractal_lba.agent``), printed
as plain lines on stderr through tqdm so they never tear the progress bar. The bar is only
drawn when stderr is a terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from fractal_lba.agent import AgentError, DeadLetter, Enqueued, Failure, Result, RetryNotice
from fractal_lba.contract import PCS

LOGGER = "fractal_lba.agent"
_SUMMARY_MAX = 20


def ago(seconds: float) -> str:
    """``12 s``, ``3 min``, ``5 h``, ``2 d``: an age for people."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def letter_error(letter: DeadLetter) -> str:
    """Why a dead letter is dead, e.g. ``HTTP 401 signature_invalid``."""
    return Failure(letter.status, letter.error, letter.detail).describe()


def letter_line(letter: DeadLetter) -> str:
    """``#3 in/events-0001.csv: rejected, HTTP 401 signature_invalid``."""
    where = letter.source or f"pcs_id {letter.pcs_id}"
    return f"#{letter.id} {where}: {letter.reason}, {letter_error(letter)}"


def dead_letter_summary(letters: Sequence[DeadLetter], *, new: int, outbox_dir: str) -> list[str]:
    """The lines a run that ends with dead letters prints (at most 20 letters)."""
    earlier = len(letters) - new
    count = f"{len(letters)} dead letter{'s' if len(letters) != 1 else ''} in the outbox"
    split = f" ({new} from this run, {earlier} from earlier runs)" if earlier > 0 else ""
    lines = [f"error: {count}{split}:"]
    lines += [f"  {letter_line(d)}" for d in letters[:_SUMMARY_MAX]]
    if len(letters) > _SUMMARY_MAX:
        lines.append(f"  ... and {len(letters) - _SUMMARY_MAX} more")
    lines.append(
        f"inspect: flk agent dlq list --outbox {outbox_dir}; after fixing the cause: "
        f"flk agent dlq requeue --outbox {outbox_dir} --all"
    )
    return lines


class Reporter:
    """File lines on stderr; on a terminal a progress bar that says what delivery waits for."""

    def __init__(self, *, terminal: bool | None = None) -> None:
        self._terminal = terminal  # None: whether stderr is a terminal when delivery starts
        self._bar: Any = None

    def echo(self, line: str) -> None:
        """One line on stderr that does not tear the progress bar."""
        from tqdm import tqdm

        if self._bar is not None and not self._bar.disable:
            tqdm.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def queued(self, path: Path, pcs: PCS, result: Enqueued) -> None:
        what = {
            "pending": "already queued",
            "acked": "already delivered",
            "dropped": "dropped earlier (not queued again)",
        }
        if result.created:
            text = f"queued: {path} epoch {pcs.epoch} pcs_id {pcs.pcs_id} (#{result.lsn})"
        elif result.state == "dead":
            text = (
                f"dead-lettered earlier: {path} epoch {pcs.epoch} pcs_id {pcs.pcs_id} "
                f"(dlq #{result.lsn}; `flk agent dlq requeue {result.lsn}` sends it again)"
            )
        else:
            text = f"{what[result.state]}: {path} epoch {pcs.epoch} pcs_id {pcs.pcs_id}"
            text += f" (#{result.lsn})"
        self.echo(text)

    def skipped(self, path: Path, error: AgentError) -> None:
        self.echo(f"warning: skipped {path}: {error}")

    def delivery_started(self, pending: int) -> None:
        from tqdm import tqdm

        terminal = sys.stderr.isatty() if self._terminal is None else self._terminal
        self._bar = tqdm(total=pending, unit="pcs", file=sys.stderr, disable=not terminal)

    def delivered(self, result: Result) -> None:
        if self._bar is not None:
            self._bar.set_description_str("", refresh=False)
            self._bar.update(1)

    def waiting(self, notice: RetryNotice) -> None:
        if self._bar is not None:
            self._bar.set_description_str(
                f"waiting for the verifier ({notice.failure.short()}), "
                f"retry in {notice.delay:.0f} s"
            )

    def delivery_finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _ReporterHandler(logging.Handler):
    """Agent log records as plain lines through the reporter."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.INFO)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.echo(record.getMessage())
        except Exception:  # a broken stderr must not stop delivery
            self.handleError(record)


@contextmanager
def agent_logging(reporter: Reporter) -> Iterator[None]:
    """Print the agent's INFO records (one line per retry) while the block runs."""
    logger = logging.getLogger(LOGGER)
    handler = _ReporterHandler(reporter)
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
