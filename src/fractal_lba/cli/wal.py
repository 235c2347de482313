"""``flk wal``: inspect, check, salvage and compact WAL directories.

By default every inbox directory of the verifier (``DATA_DIR/wal/inbox-<i>``); ``--path DIR``
names any WAL directory instead (e.g. an agent outbox, ``.flk/outbox``).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from fractal_lba.config import Settings, parse_duration
from fractal_lba.errors import ConfigError


def parse_retention(text: str) -> float:
    """``--retention`` in seconds (``7d``, ``12h``, ``30m``, ``3600``)."""
    try:
        return parse_duration(text)
    except ValueError:
        raise ConfigError(
            f"--retention must look like 7d, 12h, 30m or 3600, got {text!r}"
        ) from None


def _wal_dirs(data_dir: Path | None, paths: tuple[Path, ...]) -> list[Path]:
    """``--path`` directories, else the inbox directories under DATA_DIR (Settings)."""
    from fractal_lba.server.inbox import inbox_dirs

    if paths:
        for p in paths:
            if not p.is_dir():
                raise ConfigError(f"--path {p}: no such directory")
        return list(paths)
    if data_dir is None:
        data_dir = Settings.from_env().data_dir
    return inbox_dirs(data_dir / "wal")


_DATA_DIR = click.option(
    "--data-dir", type=click.Path(path_type=Path), help="[env DATA_DIR, default ./data]"
)
_PATH = click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A WAL directory to use instead of the inbox directories (repeatable).",
)


@click.group()
def wal() -> None:
    """WAL maintenance (verifier inbox, agent outbox)."""


@wal.command()
@_DATA_DIR
@_PATH
def status(data_dir: Path | None, paths: tuple[Path, ...]) -> None:
    """Per directory: segments, records, requests still without an outcome, and damage.

    Read-only; safe while the server runs (its outcome markers are written as soon as the
    writer is idle, so "0 pending" means every admitted request has its final answer).
    """
    from fractal_lba.server.inbox import pending_admits
    from fractal_lba.wal import inspect_directory

    dirs = _wal_dirs(data_dir, paths)
    if not dirs:
        click.echo("no inbox WAL directories")
    for d in dirs:
        reports = inspect_directory(d)
        records = [r for rep in reports for r in rep.records]
        line = f"{d.name}: {len(reports)} segments, {len(records)} records"
        if not paths:
            line += f", {len(pending_admits(records))} pending"
        damage = [rep.damage for rep in reports if rep.damage and rep.damage.kind == "corrupt"]
        if damage:
            line += f", DAMAGED ({damage[0].describe()}; run `flk wal check`)"
        click.echo(line)


@wal.command()
@_DATA_DIR
@_PATH
def check(data_dir: Path | None, paths: tuple[Path, ...]) -> None:
    """Check every segment: intact, torn tail (cut on the next open) or corrupt.

    Read-only; safe while the server runs (a write in progress can show as a torn tail).
    Exit status 1 when any segment is corrupt.
    """
    from fractal_lba.wal import inspect_directory

    corrupt = 0
    dirs = _wal_dirs(data_dir, paths)
    if not dirs:
        click.echo("no inbox WAL directories")
    for d in dirs:
        reports = inspect_directory(d)
        bad = [rep for rep in reports if rep.damage is not None]
        records = sum(len(rep.records) for rep in reports)
        legacy = sum(rep.legacy for rep in reports)
        note = f" ({legacy} in the legacy format)" if legacy else ""
        click.echo(
            f"{d}: {len(reports)} segments{note}, {records} readable records, "
            + ("intact" if not bad else f"{len(bad)} damaged")
        )
        for rep in bad:
            assert rep.damage is not None
            corrupt += rep.damage.kind == "corrupt"
            hint = (
                "run `flk wal salvage`"
                if rep.damage.kind == "corrupt"
                else "cut when the log is next opened"
            )
            click.echo(f"  {rep.damage.describe()} ({hint})")
    if corrupt:
        raise SystemExit(1)


@wal.command()
@_DATA_DIR
@_PATH
def salvage(data_dir: Path | None, paths: tuple[Path, ...]) -> None:
    """Rewrite each corrupt segment from every intact record it holds.

    The damaged file is kept as ``<segment>.damaged``; the report says how many records were
    recovered and which lsns are lost. Refuses a directory a running process holds.
    """
    from fractal_lba.wal import WalLockedError, lock_directory
    from fractal_lba.wal import salvage as salvage_dir

    locked: list[str] = []
    dirs = _wal_dirs(data_dir, paths)
    if not dirs:
        click.echo("no inbox WAL directories")
    for d in dirs:
        try:
            fd = lock_directory(d)
        except WalLockedError:
            locked.append(d.name)
            click.echo(f"{d}: in use by a running process, skipped")
            continue
        try:
            done = salvage_dir(d)
        finally:
            os.close(fd)
        if not done:
            click.echo(f"{d}: nothing to salvage")
        for seg in done:
            click.echo(f"{d}: {seg.describe()}")
    if locked:
        raise ConfigError(f"{len(locked)} WAL directories are held by a running process; stop it")


@wal.command("compact")
@_DATA_DIR
@click.option(
    "--retention", default="7d", show_default=True, help="Keep segments younger than this."
)
def compact_cmd(data_dir: Path | None, retention: str) -> None:
    """Remove sealed segments whose requests all have outcomes and that are older than
    --retention.

    A directory held by a running server (its flock) is refused, never touched: compaction
    only runs on directories of stopped workers, so it is safe to run at any time.
    """
    from fractal_lba.server.inbox import compact
    from fractal_lba.wal import WalLockedError, WalLog

    retention_s = parse_retention(retention)
    locked: list[str] = []
    dirs = _wal_dirs(data_dir, ())
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
