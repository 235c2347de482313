"""``flk wal``: inspect and compact the verifier's inbox WAL directories."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fractal_lba.config import parse_duration
from fractal_lba.errors import ConfigError


def parse_retention(text: str) -> float:
    """``--retention`` in seconds (``7d``, ``12h``, ``30m``, ``3600``)."""
    try:
        return parse_duration(text)
    except ValueError:
        raise ConfigError(
            f"--retention must look like 7d, 12h, 30m or 3600, got {text!r}"
        ) from None


def _wal_root(data_dir: Path | None) -> Path:
    base = data_dir if data_dir is not None else Path(os.environ.get("DATA_DIR") or "data")
    return base / "wal"


@click.group()
def wal() -> None:
    """Inbox WAL maintenance."""


@wal.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="[env DATA_DIR, default ./data]")
def status(data_dir: Path | None) -> None:
    """Per inbox directory: segments, records and requests still without an outcome.

    Read-only; safe while the server runs.
    """
    from fractal_lba.server.inbox import inbox_dirs, pending_admits
    from fractal_lba.wal import scan

    dirs = inbox_dirs(_wal_root(data_dir))
    if not dirs:
        click.echo("no inbox WAL directories")
    for d in dirs:
        segs = sorted(d.glob("*.wal"))
        records = [(i, p) for s in segs for i, p in enumerate(scan(s.read_bytes())[0])]
        pending = len(pending_admits(records))
        click.echo(f"{d.name}: {len(segs)} segments, {len(records)} records, {pending} pending")


@wal.command("compact")
@click.option("--data-dir", type=click.Path(path_type=Path), help="[env DATA_DIR, default ./data]")
@click.option(
    "--retention", default="7d", show_default=True, help="Keep segments younger than this."
)
def compact_cmd(data_dir: Path | None, retention: str) -> None:
    """Remove sealed segments whose requests all have outcomes and that are older than
    --retention.

    A directory held by a running server (its flock) is refused, never touched: compaction
    only runs on directories of stopped workers, so it is safe to run at any time.
    """
    from fractal_lba.server.inbox import compact, inbox_dirs
    from fractal_lba.wal import WalLockedError, WalLog

    retention_s = parse_retention(retention)
    locked: list[str] = []
    dirs = inbox_dirs(_wal_root(data_dir))
    if not dirs:
        click.echo("no inbox WAL directories")
    for d in dirs:
        log = WalLog(d)
        try:
            log.open()
        except WalLockedError:
            locked.append(d.name)
            click.echo(f"{d.name}: in use by a running server, skipped")
            continue
        try:
            report = compact(log, retention_s=retention_s)
        finally:
            log.close()
        why = f" (stopped: {report.stopped_at})" if report.stopped_at else ""
        click.echo(f"{d.name}: removed {len(report.removed)} segments, kept {report.kept}{why}")
    if locked:
        raise ConfigError(
            f"{len(locked)} inbox director{'y is' if len(locked) == 1 else 'ies are'} held by a "
            "running server; stop it to compact them"
        )
