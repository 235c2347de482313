"""``flk vrf keygen|prove|verify``: ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381) from the shell.

Keys, inputs and proofs are hex. ``--sk`` also takes ``@FILE`` or ``env:VAR`` (as the agent's
``--key``), so a secret need not appear in the process list. ``verify`` prints beta and exits
0, or prints one line naming why the proof is invalid and exits 1; malformed arguments exit 2.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import click

from fractal_lba.adversarial import vrf
from fractal_lba.adversarial.vrf_keys import parse_public_key, parse_secret_key
from fractal_lba.agent.build import read_key_text
from fractal_lba.fsutil import atomic_write


def _hex(name: str, text: str) -> bytes:
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise click.BadParameter("must be hex", param_hint=name) from None


def secret_key_from(source: str) -> bytes:
    """A VRF secret key from hex text, ``@FILE`` or ``env:VAR`` (32 bytes)."""
    return parse_secret_key(read_key_text(source))


@click.group("vrf")
def vrf_group() -> None:
    """ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381): the VRF that fixes a PCS's seed."""


@vrf_group.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the secret key (hex) to this file, mode 0600, instead of printing it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def keygen(out: Path | None, as_json: bool) -> None:
    """Generate a VRF key pair.

    Prints the secret key (hex, for ``flk vrf prove --sk`` and the agent's ``--vrf-key``)
    unless --out is given, and the public key as hex and as base64 (the tenants file's
    ``vrf.public_key``).
    """
    sk, pk = vrf.keygen()
    if out is not None:
        if out.exists():
            raise click.BadParameter(
                f"{out} exists; refusing to overwrite a key", param_hint="--out"
            )
        atomic_write(out, (sk.hex() + "\n").encode("ascii"))
    fields = {"public_key": pk.hex(), "public_key_b64": base64.b64encode(pk).decode("ascii")}
    if out is None:
        fields = {"secret_key": sk.hex(), **fields}
    else:
        fields = {"secret_key_file": str(out), **fields}
    if as_json:
        click.echo(json.dumps(fields))
    else:
        for key, value in fields.items():
            click.echo(f"{key}: {value}")


@vrf_group.command()
@click.option("--sk", required=True, help="Secret key: hex, @FILE or env:VAR.")
@click.option("--alpha", required=True, help="VRF input, hex.")
def prove(sk: str, alpha: str) -> None:
    """Print the 80-byte proof pi (hex) of ALPHA."""
    click.echo(vrf.prove(secret_key_from(sk), _hex("--alpha", alpha)).hex())


@vrf_group.command()
@click.option("--pk", required=True, help="Public key, hex (32 bytes) or base64.")
@click.option("--alpha", required=True, help="VRF input, hex.")
@click.option("--pi", required=True, help="Proof, hex (80 bytes).")
def verify(pk: str, alpha: str, pi: str) -> None:
    """Print beta (hex) when PI is a valid proof of ALPHA under PK; else exit 1 with a reason."""
    try:
        alpha_raw, pi_raw = _hex("--alpha", alpha), _hex("--pi", pi)
        beta = vrf.verify(parse_public_key(pk), alpha_raw, pi_raw)
    except vrf.VrfError as exc:
        click.echo(f"invalid: {exc.reason}: {exc}", err=True)
        sys.exit(1)
    click.echo(beta.hex())
