"""``flk agent dlq list|requeue|drop``: inspect dead letters and bring them back (or not).

``list`` reads without the outbox lock (works while an agent runs). ``requeue`` and ``drop``
change the outbox, so they need it: stop a running ``flk agent run`` first. A requeue is
durable before it is reported; a crash in the middle leaves each entry in exactly one of
the DLQ and the outbox.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from fractal_lba.agent import DeadLetter, Outbox
from fractal_lba.cli.agent_options import outbox_option
from fractal_lba.cli.agent_output import letter_error
from fractal_lba.errors import FlkError
from fractal_lba.wal import WalLockedError


def _ids(values: tuple[str, ...]) -> list[int]:
    out = []
    for value in values:
        text = value.removeprefix("#")
        if not text.isdigit():
            raise click.BadParameter(
                f"'{value}' is not a dead letter id (a number)", param_hint="ID"
            )
        out.append(int(text))
    return out


def _need_outbox(outbox_dir: str) -> None:
    if not Path(outbox_dir).is_dir():
        raise FlkError(f"no outbox at {outbox_dir}")


@contextmanager
def _locked(outbox_dir: str) -> Iterator[Outbox]:
    """The outbox, locked; a running agent holding it gets a clear line."""
    _need_outbox(outbox_dir)
    outbox = Outbox(outbox_dir)
    try:
        outbox.open()
    except WalLockedError:
        raise FlkError(
            f"the outbox {outbox_dir} is in use by a running `flk agent run`; stop it first"
        ) from None
    try:
        yield outbox
    finally:
        outbox.close()


def _when(stamp: str | None) -> str:
    """``2025-01-01 12:00:00`` from an outbox timestamp (seconds are enough to read)."""
    return "-" if not stamp else stamp[:19].replace("T", " ")


def _row(letter: DeadLetter) -> list[str]:
    return [
        f"#{letter.id}",
        letter.reason,
        str(letter.attempts),
        "-" if letter.status is None else str(letter.status),
        _when(letter.first_attempt_at),
        _when(letter.last_attempt_at),
        letter.source or "-",
        letter_error(letter),
    ]


_HEADER = ["ID", "REASON", "ATTEMPTS", "STATUS", "FIRST ATTEMPT", "LAST ATTEMPT", "SOURCE", "ERROR"]


@click.group()
def dlq() -> None:
    """Dead letters: PCS the verifier refused (final 4xx) or that expired (--max-age)."""


@dlq.command("list")
@outbox_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter.")
def list_cmd(outbox_dir: str, as_json: bool) -> None:
    """List dead letters: reason, attempts, last status, first/last attempt, source file."""
    _need_outbox(outbox_dir)
    letters = Outbox.read_dead_letters(outbox_dir)
    if as_json:
        for d in letters:
            doc = {
                "id": d.id,
                "pcs_id": d.pcs_id,
                "tenant_id": d.tenant_id,
                "version": d.version,
                "source": d.source,
                "reason": d.reason,
                "status": d.status,
                "error": d.error,
                "detail": d.detail,
                "field": d.field,
                "attempts": d.attempts,
                "queued_at": d.queued_at,
                "first_attempt_at": d.first_attempt_at,
                "last_attempt_at": d.last_attempt_at,
                "dead_at": d.dead_at,
            }
            click.echo(json.dumps(doc))
        return
    if not letters:
        click.echo("no dead letters")
        return
    rows = [_HEADER, *(_row(d) for d in letters)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


@dlq.command("requeue")
@outbox_option
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter.")
@click.argument("ids", nargs=-1, metavar="[ID]...")
def requeue_cmd(outbox_dir: str, everything: bool, ids: tuple[str, ...]) -> None:
    """Move dead letters back into the outbox; the next `flk agent run` delivers them.

    IDs are those of `flk agent dlq list` (#3 or 3). Fix the cause first (a key, a
    tenant, the verifier's policy): a PCS refused again goes back to the DLQ.
    """
    if everything == bool(ids):
        raise click.UsageError("give dead letter IDs or --all (not both)")
    with _locked(outbox_dir) as outbox:
        moved = outbox.requeue(None if everything else _ids(ids))
    if not moved:
        click.echo("no dead letters to requeue", err=True)
        return
    for m in moved:
        click.echo(f"requeued: #{m.id} -> #{m.lsn} pcs_id {m.pcs_id}", err=True)
    click.echo(f"{len(moved)} requeued; `flk agent run --outbox {outbox_dir}` delivers them")


@dlq.command("drop")
@outbox_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def drop_cmd(outbox_dir: str, ids: tuple[str, ...]) -> None:
    """Delete dead letters for good (their PCS are not delivered)."""
    with _locked(outbox_dir) as outbox:
        dropped = outbox.drop(_ids(ids))
    click.echo(f"dropped: {', '.join(f'#{i}' for i in dropped)}")
