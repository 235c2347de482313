"""``flk keygen``: new HMAC or Ed25519 key material in the formats of SPEC section 2."""

from __future__ import annotations

import json

import click

from fractal_lba.contract.keys import generate_key


@click.command()
@click.option(
    "--alg",
    type=click.Choice(["ed25519", "hmac"]),
    default="ed25519",
    show_default=True,
    help="Key algorithm.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def keygen(alg: str, as_json: bool) -> None:
    """Generate signing key material.

    ed25519: prints the private seed (base64, for the agent's --key) and the public key
    (base64 of 32 raw bytes, for PCS_ED25519_PUB_B64 / a tenant's key). hmac: prints a
    ``base64:``-prefixed 32-byte secret usable on both sides (PCS_HMAC_KEY, --key).
    """
    key = generate_key(alg)
    if as_json:
        out = {"alg": key.alg, "private": key.secret}
        if key.public is not None:
            out["public"] = key.public
        click.echo(json.dumps(out))
        return
    click.echo(f"alg: {key.alg}")
    click.echo(f"private: {key.secret}")
    if key.public is not None:
        click.echo(f"public: {key.public}")
