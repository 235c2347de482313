"""Options shared by the ``flk build-pcs`` / ``flk agent`` commands and their parsing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from fractal_lba.adversarial.vrf_keys import parse_secret_key
from fractal_lba.agent import DEFAULT_SCALES, DEFAULT_SEED, BuildSpec, load_signer
from fractal_lba.agent.build import read_key_text
from fractal_lba.config import parse_duration
from fractal_lba.contract import LATEST_VERSION, SUPPORTED_VERSIONS, Signer
from fractal_lba_client.contract import DEFAULT_TENANT

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_OUTBOX = ".flk/outbox"
KEY_ENV = "FLK_AGENT_KEY"


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


def pcs_options(*, required: bool) -> Callable[[F], F]:
    """Options shared by every command that builds a PCS (``required``: key and shard id)."""
    needed = "" if required else " Needed with --in."

    def decorate(func: F) -> F:
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
                envvar=KEY_ENV,
                required=required,
                help="Signing key: @FILE (read from a file) or env:VAR; default $FLK_AGENT_KEY. "
                "The key text itself also works but is visible in ps and shell history. "
                "HMAC keys are text or base64:...; Ed25519 keys are the base64 32-byte seed "
                "printed by `flk keygen`." + needed,
            ),
            click.option(
                "--alg",
                type=click.Choice(["hmac", "ed25519"]),
                default="hmac",
                show_default=True,
                help="Signature algorithm.",
            ),
            click.option(
                "--shard-id",
                required=required,
                help="Shard identifier put into the PCS (and its pcs_id)." + needed,
            ),
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
                "--pcs-version",
                "--version",
                "pcs_version",
                type=click.Choice(list(SUPPORTED_VERSIONS)),
                default=LATEST_VERSION,
                show_default=True,
                help="PCS schema version to emit (0.3 signs the whole record for the tenant; "
                "0.1/0.2 only 8 fields).",
            ),
            click.option(
                "--meta",
                multiple=True,
                callback=_parse_meta,
                metavar="KEY=VALUE",
                help="Metadata entry (version 0.2; repeatable).",
            ),
            click.option(
                "--vrf-key",
                "vrf_key_source",
                default=None,
                help="ECVRF secret key, @FILE (from `flk vrf keygen --out`) or env:VAR: the "
                "seed comes from a VRF proof over tenant|shard|epoch, sent in the PCS.",
            ),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def require(value: str | None, flag: str) -> str:
    if not value:
        raise click.UsageError(f"missing option {flag} (needed with --in)")
    return value


def signer_of(alg: str, key_source: str | None) -> Signer:
    """The signer of ``--key``; warns when the key itself was typed on the command line."""
    source = require(key_source, "--key")
    ctx = click.get_current_context()
    typed = ctx.get_parameter_source("key_source") == click.core.ParameterSource.COMMANDLINE
    if typed and not source.startswith(("@", "env:")):
        click.echo(
            "warning: a key given with --key is visible in ps output and shell history; "
            f"use --key @FILE, --key env:VAR or ${KEY_ENV}",
            err=True,
        )
    return load_signer(alg, source)


def vrf_key_of(source: str | None) -> bytes | None:
    """The --vrf-key secret, refusing an explicit --seed next to it (the proof fixes it)."""
    if source is None:
        return None
    ctx = click.get_current_context()
    if ctx.get_parameter_source("seed") is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--seed and --vrf-key exclude each other: the VRF fixes the seed")
    return parse_secret_key(read_key_text(source))


def build_spec(
    build: dict[str, Any], *, epoch: int | None, tenant_id: str | None = None
) -> BuildSpec:
    """The BuildSpec of the shared PCS options."""
    return BuildSpec(
        signer=signer_of(build["alg"], build["key_source"]),
        shard_id=require(build["shard_id"], "--shard-id"),
        scales=build["scales"],
        seed=build["seed"],
        version=build["pcs_version"],
        meta=build["meta"],
        fmt=build["fmt"],
        epoch=epoch,
        vrf_key=vrf_key_of(build["vrf_key_source"]),
        tenant_id=tenant_id or DEFAULT_TENANT,
    )


def outbox_option(func: F) -> F:
    """``--outbox DIR`` (also $FLK_OUTBOX)."""
    return click.option(
        "--outbox",
        "outbox_dir",
        envvar="FLK_OUTBOX",
        default=DEFAULT_OUTBOX,
        show_default=True,
        help="Outbox directory (default also from $FLK_OUTBOX).",
    )(func)


def input_options(func: F) -> F:
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


def parse_duration_option(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    """``--max-age 7d`` -> seconds."""
    try:
        return parse_duration(value)
    except ValueError:
        raise click.BadParameter("expected a duration such as 45s, 30m, 12h, 7d or 0") from None
