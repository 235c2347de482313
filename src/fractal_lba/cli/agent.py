"""``flk gen-events``, ``flk build-pcs`` and ``flk agent ...``: thin shells over fractal_lba.agent.

Exit status: 0 done; 2 bad usage or input (one ``error:`` line); 3 (:data:`EXIT_DEAD_LETTERS`)
``flk agent run`` ended with dead letters in the outbox (listed on stderr).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from fractal_lba.agent import (
    AgentRunner,
    Deliverer,
    Outbox,
    RetryPolicy,
    StopSignal,
    build_pcs,
    enqueue_files,
    expand_inputs,
    load_events,
)
from fractal_lba.agent.delivery import Failure
from fractal_lba.agent.dlq import DLQ_DIR
from fractal_lba.agent.records import parse_time
from fractal_lba.agent.synthetic import SHAPES, synthetic_csv
from fractal_lba.cli.agent_options import (
    build_spec,
    input_options,
    outbox_option,
    parse_duration_option,
    pcs_options,
    signer_of,
    vrf_key_of,
)
from fractal_lba.cli.agent_output import Reporter, agent_logging, ago, dead_letter_summary
from fractal_lba.contract import encode_pcs
from fractal_lba.errors import FlkError
from fractal_lba.fsutil import atomic_write

EXIT_DEAD_LETTERS = 3


# -- flk gen-events / build-pcs --------------------------------------------------------------
@click.command("gen-events")
@click.option(
    "--shape",
    type=click.Choice(SHAPES),
    default="plane",
    show_default=True,
    help="line ~ D_hat 1, plane ~ 2, cube ~ 3, cluster = high coherence (sticky).",
)
@click.option(
    "--n",
    "count",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Number of events.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write here (atomically) instead of stdout.",
)
def gen_events_cmd(shape: str, count: int, seed: int, out: str | None) -> None:
    """Write a synthetic event stream (CSV ``timestamp,x,y,z``) for trying things out."""
    data = synthetic_csv(shape, count, seed)
    if out is None:
        click.echo(data.decode("ascii"), nl=False)
    else:
        atomic_write(Path(out), data)


@click.command("build-pcs")
@click.option("--in", "in_path", required=True, metavar="FILE", help="Event file (CSV / JSONL).")
@click.option("--epoch", type=click.IntRange(min=0), required=True, help="Epoch number.")
@click.option("--out", "out_path", metavar="FILE", help="Write the PCS here (atomically).")
@click.option(
    "--tenant-id", default="default", show_default=True,
    help="Tenant the PCS will be submitted as (part of the VRF input with --vrf-key).",
)  # fmt: skip
@pcs_options(required=True)
def build_pcs_cmd(
    in_path: str,
    epoch: int,
    out_path: str | None,
    tenant_id: str,
    fmt: str | None,
    key_source: str,
    alg: str,
    shard_id: str,
    scales: list[int],
    seed: int,
    pcs_version: str,
    meta: dict[str, str],
    vrf_key_source: str | None,
) -> None:
    """Build and sign one PCS from an event file and print it as JSON.

    The event file is CSV with the header ``timestamp,x,y,z`` or JSONL with one object per
    line holding those keys. Example:

        flk build-pcs --in events.csv --shard-id shard-001 --epoch 7 --key @hmac.key
    """
    signer = signer_of(alg, key_source)
    events = load_events(in_path, fmt)
    pcs = build_pcs(
        events,
        shard_id=shard_id,
        epoch=epoch,
        signer=signer,
        scales=scales,
        seed=seed,
        version=pcs_version,
        meta=meta,
        vrf_key=vrf_key_of(vrf_key_source),
        tenant_id=tenant_id,
    )
    body = encode_pcs(pcs) + b"\n"
    if out_path:
        atomic_write(Path(out_path), body)
    else:
        click.echo(body.decode("utf-8"), nl=False)


# -- flk agent -------------------------------------------------------------------------------
@click.group()
def agent() -> None:
    """Queue PCS in a durable outbox, deliver them to a verifier, manage dead letters."""


@agent.command("enqueue")
@click.option(
    "--in",
    "inputs",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Event file or directory of event files (repeatable).",
)
@input_options
@outbox_option
@pcs_options(required=True)
def enqueue_cmd(
    inputs: tuple[str, ...], tenant_id: str | None, outbox_dir: str, **build: Any
) -> None:
    """Build PCS from event files and queue them durably, without delivering.

    Queueing is idempotent: a PCS whose pcs_id is already in the outbox (or its dead-letter
    queue) is not queued again.
    """
    epoch = build.pop("epoch")
    spec = build_spec(build, epoch=epoch, tenant_id=tenant_id)
    files = expand_inputs(inputs)
    with Outbox(outbox_dir) as outbox:
        enqueue_files(outbox, files, spec, tenant_id=tenant_id, reporter=Reporter())


@agent.command("run")
@click.option(
    "--in",
    "inputs",
    multiple=True,
    metavar="PATH",
    help="Event file or directory (repeatable). Without it, only deliver what is pending.",
)
@click.option(
    "--endpoint",
    required=True,
    help="Full submit URL, e.g. http://127.0.0.1:8080/v1/pcs/submit.",
)
@click.option("--once", is_flag=True, help="Queue, deliver until the outbox is empty, exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between scans of the --in paths when not --once.",
)
@click.option(
    "--max-age",
    default="7d",
    show_default=True,
    callback=parse_duration_option,
    help="How long a PCS is retried while the verifier fails transiently (30m, 12h, 7d; "
    "0: forever); then it is dead-lettered as expired.",
)
@click.option(
    "--backoff-base",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="First backoff ceiling in seconds (doubles per retry, full jitter).",
)
@click.option(
    "--backoff-cap",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Largest backoff ceiling in seconds.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="HTTP timeout in seconds.",
)
@input_options
@outbox_option
@pcs_options(required=False)
def run_cmd(
    inputs: tuple[str, ...],
    endpoint: str,
    once: bool,
    interval: float,
    max_age: float,
    backoff_base: float,
    backoff_cap: float,
    timeout: float,
    tenant_id: str | None,
    outbox_dir: str,
    **build: Any,
) -> None:
    """Queue PCS built from the --in files, then deliver everything pending.

    200 / 202 acknowledge a PCS. Connection errors, timeouts, 408, 429 and 5xx are retried
    with capped exponential backoff (full jitter, honouring Retry-After) for up to --max-age
    (default 7 days) after the PCS was queued, so a verifier restart or a long outage
    dead-letters nothing; each retry prints one line. Any other answer is final: the PCS
    goes to the dead-letter queue (see `flk agent dlq`). A crash at any point loses
    nothing: restart and pending PCS are sent again.

    With --once the command exits when the outbox is empty; otherwise it keeps scanning
    the --in paths every --interval seconds for new or changed files (epochs from file
    names; unreadable files are skipped with a warning) until SIGTERM / Ctrl-C. Exit
    status 3 when the outbox holds dead letters at the end (they are listed).
    """
    if not once and build.get("epoch") is not None:
        raise click.UsageError("--epoch needs --once; the watch loop takes epochs from file names")
    policy = RetryPolicy(base_delay=backoff_base, max_delay=backoff_cap, max_age=max_age)
    epoch = build.pop("epoch")
    spec = build_spec(build, epoch=epoch, tenant_id=tenant_id) if inputs else None
    stop = StopSignal()
    reporter = Reporter()
    with (
        agent_logging(reporter),
        stop.installed(),
        Outbox(outbox_dir) as outbox,
        Deliverer(
            outbox,
            endpoint,
            policy=policy,
            timeout=timeout,
            signer=spec.signer if spec else None,
            sleep=stop.sleep,
            stop=stop,
        ) as deliverer,
    ):
        runner = AgentRunner(
            outbox, deliverer, reporter, inputs=inputs, spec=spec, tenant_id=tenant_id, stop=stop
        )
        runner.run(once=once, interval=interval, sleep=stop.sleep)
        if stop.requested:
            click.echo("stopped", err=True)
        stats = outbox.stats()
        letters = outbox.dead_letters()
    click.echo(f"pending: {stats.pending}  acked: {stats.acked}  dead-lettered: {stats.dead}")
    if letters:
        for line in dead_letter_summary(letters, new=runner.dead, outbox_dir=outbox_dir):
            click.echo(line, err=True)
        sys.exit(EXIT_DEAD_LETTERS)


@agent.command("status")
@outbox_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_cmd(outbox_dir: str, as_json: bool) -> None:
    """Show pending / acked / dead-lettered counts, the oldest pending PCS and the last error.

    Works while an agent is running (reads without taking the outbox lock).
    """
    if not Path(outbox_dir).is_dir():
        raise FlkError(f"no outbox at {outbox_dir}")
    stats = Outbox.read_stats(outbox_dir)
    now = time.time()
    age = now - stats.oldest_queued_at if stats.oldest_queued_at is not None else None
    failure = stats.last_failure
    dlq_dir = str(Path(outbox_dir) / DLQ_DIR)
    if as_json:
        last = None
        if failure is not None:
            t = failure.tries
            last = {
                "lsn": failure.lsn,
                "attempts": t.count,
                "at": t.last_at,
                "status": t.status,
                "error": t.error,
                "detail": t.detail,
            }
        doc = {
            "pending": stats.pending,
            "acked": stats.acked,
            "dead_lettered": stats.dead,
            "oldest_pending_lsn": stats.oldest_pending_lsn,
            "oldest_pending_age_s": None if age is None else round(age, 3),
            "last_error": last,
            "dlq_dir": dlq_dir,
        }
        click.echo(json.dumps(doc))
        return
    click.echo(f"pending: {stats.pending}  acked: {stats.acked}  dead-lettered: {stats.dead}")
    if age is not None:
        line = f"oldest pending: #{stats.oldest_pending_lsn}, queued {ago(age)} ago"
        if failure is not None:
            t = failure.tries
            what = Failure(t.status, t.error, t.detail).describe()
            line += (
                f"; last error {ago(now - parse_time(t.last_at))} ago: {what} "
                f"(#{failure.lsn}, attempt {t.count})"
            )
        click.echo(line)
    if stats.dead:
        click.echo(f"dead letters: see `flk agent dlq list --outbox {outbox_dir}`")


def register(main: click.Group) -> None:
    """Attach ``gen-events``, ``build-pcs`` and the ``agent`` group to the root command."""
    from fractal_lba.cli.agent_dlq import dlq

    agent.add_command(dlq)
    main.add_command(gen_events_cmd)
    main.add_command(build_pcs_cmd)
    main.add_command(agent)
