"""``flk build-pcs`` and ``flk agent run|enqueue|status``: thin shells over fractal_lba.agent."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from fractal_lba.agent import (
    DEFAULT_SCALES,
    DEFAULT_SEED,
    AgentError,
    AgentRunner,
    BuildSpec,
    Deliverer,
    Enqueued,
    Outbox,
    Result,
    RetryPolicy,
    StopSignal,
    build_pcs,
    enqueue_files,
    expand_inputs,
    load_events,
    load_signer,
)
from fractal_lba.agent.synthetic import SHAPES, synthetic_csv
from fractal_lba.contract import LATEST_VERSION, PCS, SUPPORTED_VERSIONS, encode_pcs
from fractal_lba.fsutil import atomic_write

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_OUTBOX = ".flk/outbox"


def _parse_scales(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        scales = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter("expected comma-separated integers, e.g. 2,4,8,16,32") from None
    return scales


def _parse_meta(
    _ctx: click.Context, _param: click.Parameter, value: Sequence[str]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in value:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise click.BadParameter("expected KEY=VALUE")
        out[key] = val
    return out


def _pcs_options(func: F) -> F:
    """Options shared by every command that builds a PCS."""
    options = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["csv", "jsonl"]),
            default=None,
            help="Event file format (default: from the extension .csv / .jsonl / .ndjson).",
        ),
        click.option(
            "--key",
            "key_source",
            envvar="FLK_AGENT_KEY",
            help="Signing key: the key text, @FILE to read it from a file, or env:VAR. "
            "Default: $FLK_AGENT_KEY. HMAC keys are text or base64:...; Ed25519 keys are the "
            "base64 32-byte seed printed by `flk keygen`.",
        ),
        click.option(
            "--alg",
            type=click.Choice(["hmac", "ed25519"]),
            default="hmac",
            show_default=True,
            help="Signature algorithm.",
        ),
        click.option("--shard-id", help="Shard identifier put into the PCS (and its pcs_id)."),
        click.option(
            "--scales",
            default=",".join(map(str, DEFAULT_SCALES)),
            show_default=True,
            callback=_parse_scales,
            help="Box-counting scales, strictly increasing.",
        ),
        click.option(
            "--seed",
            type=click.IntRange(0, 2**64 - 1),
            default=DEFAULT_SEED,
            show_default=True,
            help="Seed of the coh_star directions.",
        ),
        click.option(
            "--version",
            "pcs_version",
            type=click.Choice(list(SUPPORTED_VERSIONS)),
            default=LATEST_VERSION,
            show_default=True,
            help="PCS schema version to emit.",
        ),
        click.option(
            "--meta",
            multiple=True,
            callback=_parse_meta,
            metavar="KEY=VALUE",
            help="Metadata entry (version 0.2; repeatable).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _require(value: str | None, flag: str) -> str:
    if not value:
        raise click.UsageError(f"missing option {flag}")
    return value


# -- flk build-pcs ---------------------------------------------------------------------------
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
@_pcs_options
def build_pcs_cmd(
    in_path: str,
    epoch: int,
    out_path: str | None,
    fmt: str | None,
    key_source: str | None,
    alg: str,
    shard_id: str | None,
    scales: list[int],
    seed: int,
    pcs_version: str,
    meta: dict[str, str],
) -> None:
    """Build and sign one PCS from an event file and print it as JSON.

    The event file is CSV with the header ``timestamp,x,y,z`` or JSONL with one object per
    line holding those keys. Example:

        flk build-pcs --in events.csv --shard-id shard-001 --epoch 7 --key @hmac.key
    """
    signer = load_signer(alg, _require(key_source, "--key"))
    events = load_events(in_path, fmt)
    pcs = build_pcs(
        events,
        shard_id=_require(shard_id, "--shard-id"),
        epoch=epoch,
        signer=signer,
        scales=scales,
        seed=seed,
        version=pcs_version,
        meta=meta,
    )
    body = encode_pcs(pcs) + b"\n"
    if out_path:
        atomic_write(Path(out_path), body)
    else:
        click.echo(body.decode("utf-8"), nl=False)


# -- flk agent -------------------------------------------------------------------------------
@click.group()
def agent() -> None:
    """Queue PCS in a durable outbox and deliver them to a verifier."""


class _Reporter:
    """Lines on stderr for files, a progress bar on a terminal for delivery."""

    def __init__(self) -> None:
        self._bar: Any = None

    def queued(self, path: Path, pcs: PCS, result: Enqueued) -> None:
        what = "queued" if result.created else "already queued"
        click.echo(
            f"{what}: {path} epoch {pcs.epoch} pcs_id {pcs.pcs_id} (#{result.lsn})", err=True
        )

    def skipped(self, path: Path, error: AgentError) -> None:
        click.echo(f"warning: skipped {path}: {error}", err=True)

    def delivery_started(self, pending: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=pending, unit="pcs", file=sys.stderr, disable=not sys.stderr.isatty()
        )

    def delivered(self, result: Result) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def delivery_finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _build_spec(build: dict[str, Any], *, epoch: int | None) -> BuildSpec:
    """The BuildSpec of the shared PCS options (key and shard id are required here)."""
    return BuildSpec(
        signer=load_signer(build["alg"], _require(build["key_source"], "--key")),
        shard_id=_require(build["shard_id"], "--shard-id"),
        scales=build["scales"],
        seed=build["seed"],
        version=build["pcs_version"],
        meta=build["meta"],
        fmt=build["fmt"],
        epoch=epoch,
    )


def _outbox_option(func: F) -> F:
    return click.option(
        "--outbox",
        "outbox_dir",
        envvar="FLK_OUTBOX",
        default=DEFAULT_OUTBOX,
        show_default=True,
        help="Outbox directory (default also from $FLK_OUTBOX).",
    )(func)


def _input_options(func: F) -> F:
    func = click.option(
        "--epoch",
        type=click.IntRange(min=0),
        default=None,
        help="Epoch of the first file (the next files get epoch+1, ...). Without it each "
        "file's epoch is the last number in its name, e.g. events-0007.csv -> 7.",
    )(func)
    func = click.option(
        "--tenant-id", default=None, help="Tenant sent as X-Tenant-Id with these PCS."
    )(func)
    return func


@agent.command("enqueue")
@click.option(
    "--in",
    "inputs",
    multiple=True,
    required=True,
    metavar="PATH",
    help="Event file or directory of event files (repeatable).",
)
@_input_options
@_outbox_option
@_pcs_options
def enqueue_cmd(
    inputs: tuple[str, ...], tenant_id: str | None, outbox_dir: str, **build: Any
) -> None:
    """Build PCS from event files and queue them durably, without delivering.

    Queueing is idempotent: a PCS whose pcs_id is already in the outbox is not queued again.
    """
    epoch = build.pop("epoch")
    spec = _build_spec(build, epoch=epoch)
    files = expand_inputs(inputs)
    with Outbox(outbox_dir) as outbox:
        enqueue_files(outbox, files, spec, tenant_id=tenant_id, reporter=_Reporter())


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
    "--max-attempts",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Attempts per PCS before it is dead-lettered (0: unlimited).",
)
@click.option(
    "--max-elapsed",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds of retrying per PCS before it is dead-lettered (0: unlimited).",
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
@_input_options
@_outbox_option
@_pcs_options
def run_cmd(
    inputs: tuple[str, ...],
    endpoint: str,
    once: bool,
    interval: float,
    max_attempts: int,
    max_elapsed: float,
    backoff_base: float,
    backoff_cap: float,
    timeout: float,
    tenant_id: str | None,
    outbox_dir: str,
    **build: Any,
) -> None:
    """Queue PCS built from the --in files, then deliver everything pending.

    Delivery retries 429, 5xx and connection errors with capped exponential backoff (full
    jitter, honouring Retry-After); other 4xx answers move the PCS to the dead-letter file
    OUTBOX/dlq.jsonl. A crash at any point loses nothing: restart and pending PCS are sent
    again. With --once the command exits when the outbox is empty (status 1 if anything was
    dead-lettered); otherwise it keeps scanning the --in paths every --interval seconds for
    new or changed files (epochs from file names; unreadable files are skipped with a
    warning) until SIGTERM / Ctrl-C.
    """
    if not once and build.get("epoch") is not None:
        raise click.UsageError("--epoch needs --once; the watch loop takes epochs from file names")
    policy = RetryPolicy(
        base_delay=backoff_base,
        max_delay=backoff_cap,
        max_attempts=max_attempts,
        max_elapsed=max_elapsed,
    )
    epoch = build.pop("epoch")
    spec = _build_spec(build, epoch=epoch) if inputs else None
    stop = StopSignal()
    with (
        stop.installed(),
        Outbox(outbox_dir) as outbox,
        Deliverer(
            outbox, endpoint, policy=policy, timeout=timeout, sleep=stop.sleep, stop=stop
        ) as deliverer,
    ):
        runner = AgentRunner(
            outbox,
            deliverer,
            _Reporter(),
            inputs=inputs,
            spec=spec,
            tenant_id=tenant_id,
            stop=stop,
        )
        runner.run(once=once, interval=interval, sleep=stop.sleep)
        if stop.requested:
            click.echo("stopped", err=True)
        stats = outbox.stats()
    click.echo(f"pending: {stats.pending}  acked: {stats.acked}  dead-lettered: {stats.dead}")
    if runner.dead:
        click.echo(
            f"warning: {runner.dead} PCS dead-lettered in this run; see {outbox.dlq_path}",
            err=True,
        )
        sys.exit(1)


@agent.command("status")
@_outbox_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_cmd(outbox_dir: str, as_json: bool) -> None:
    """Show pending / acked / dead-lettered counts (works while an agent is running)."""
    if not Path(outbox_dir).is_dir():
        raise AgentError(f"no outbox at {outbox_dir}")
    stats = Outbox.read_stats(outbox_dir)
    dlq = str(Path(outbox_dir) / "dlq.jsonl")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "pending": stats.pending,
                    "acked": stats.acked,
                    "dead_lettered": stats.dead,
                    "oldest_pending_lsn": stats.oldest_pending_lsn,
                    "dlq_file": dlq,
                }
            )
        )
        return
    click.echo(f"pending: {stats.pending}")
    click.echo(f"acked: {stats.acked}")
    click.echo(f"dead-lettered: {stats.dead}")
    if stats.dead:
        click.echo(f"dlq file: {dlq}")


def register(main: click.Group) -> None:
    """Attach ``build-pcs`` and the ``agent`` group to the root command."""
    main.add_command(gen_events_cmd)
    main.add_command(build_pcs_cmd)
    main.add_command(agent)
