"""The ``flk`` command line: one module per command group, each a thin shell over the library.

Errors from the library (:class:`~fractal_lba.errors.FlkError`) and OS errors end the command
with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from fractal_lba import __version__
from fractal_lba.errors import FlkError

__all__ = ["FlkGroup", "main"]


class FlkGroup(click.Group):
    """Click group that turns library errors into one clear line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlkError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"error: {exc.strerror or exc}{where}", err=True)
            sys.exit(2)


@click.group(cls=FlkGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """fractal-lba: build, sign, deliver and verify PCS (Proof-of-Computation Summaries)."""
    # Every flk process (agent, wal tools, serve's supervisor) arms its failpoints at start.
    from fractal_lba import failpoints
    from fractal_lba.config import failpoints_from_env

    failpoints.configure(failpoints_from_env())


@main.command()
def version() -> None:
    """Print the fractal-lba version and the PCS contract versions it speaks."""
    from fractal_lba.contract import SUPPORTED_VERSIONS

    click.echo(f"fractal-lba {__version__} (PCS versions {', '.join(SUPPORTED_VERSIONS)})")


def _register() -> None:
    """Attach the command groups (each module defines one click command or group)."""
    from fractal_lba.cli import agent, keys, serve, wal

    agent.register(main)
    main.add_command(keys.keygen)
    from fractal_lba.cli.worm import worm

    main.add_command(worm)
    main.add_command(serve.serve)
    main.add_command(wal.wal)
    from fractal_lba.cli.vrf import vrf_group

    main.add_command(vrf_group)


_register()
