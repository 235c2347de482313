"""``flk worm``: verify, inspect, prove, seal and prune the WORM audit log (SPEC section 7).

Exit status: 0 success; 1 the log (or a proof) failed verification — the first broken entry is
printed; 2 usage or I/O errors.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fractal_lba.audit.errors import AuditError, AuditLockedError, AuditVerifyError
from fractal_lba.audit.index import lineage_all
from fractal_lba.audit.index import reindex as reindex_log
from fractal_lba.audit.integrity import verify_log
from fractal_lba.audit.proof import build_proofs, check_proof, parse_vkey, proof_bytes
from fractal_lba.audit.prune import prune as prune_log
from fractal_lba.audit.worm import AUDIT_KEY_FILE, load_or_create_audit_key
from fractal_lba.audit.writer import SEAL_REQUEST_NAME, VKEY_NAME, WormWriter, directory_lock
from fractal_lba.config import AuditSettings
from fractal_lba.contract.keys import parse_ed25519_public
from fractal_lba.errors import FlkError
from fractal_lba.merkle import ProofError


def _settings() -> AuditSettings:
    """The audit variables of the environment, through the one settings loader."""
    return AuditSettings.from_env()


base_option = click.option(
    "--base",
    "base",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Audit log directory [default: $WORM_BASE_DIR or $DATA_DIR/audit].",
)


def _base(base: Path | None) -> Path:
    return base if base is not None else _settings().base_dir


def _public_key(base: Path, pubkey: str | None, key_file: Path | None) -> Ed25519PublicKey | None:
    if pubkey is not None:
        return parse_ed25519_public(pubkey, what="--pubkey")
    if key_file is not None:
        return load_or_create_audit_key_readonly(key_file).public_key()
    vkey = base / VKEY_NAME
    if vkey.exists():
        click.echo(
            f"note: using the public key recorded in {vkey}; pass --pubkey to pin the key "
            "you trust",
            err=True,
        )
        return parse_vkey(vkey.read_text())[1]
    return None


def load_or_create_audit_key_readonly(path: Path) -> Ed25519PrivateKey:
    """Load an existing key file (never creates one)."""
    if not path.exists():
        raise AuditError(f"key file {path} does not exist")
    return load_or_create_audit_key(path)


@click.group()
def worm() -> None:
    """Tamper-evident audit log: verify, lineage, prove, seal, prune."""


@worm.command()
@base_option
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC).")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC).")
@click.option("--pubkey", help="Audit public key (base64 of 32 bytes) to pin.")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), help="Audit key file.")
@click.option(
    "--allow-unsigned", is_flag=True, help="UNSAFE: accept checkpoints written without a key."
)
def verify(
    base: Path | None,
    date_from: dt.datetime | None,
    date_to: dt.datetime | None,
    pubkey: str | None,
    key_file: Path | None,
    allow_unsigned: bool,
) -> None:
    """Re-derive every entry hash, chain link, segment root and checkpoint signature."""
    b = _base(base)
    key = _public_key(b, pubkey, key_file)
    bar: Any = None
    progress: Callable[[int], None] | None = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" entries", unit_scale=True, file=sys.stderr)
        progress = bar.update
    t0 = time.perf_counter()
    try:
        rep = verify_log(
            b,
            key,
            date_from=date_from.date() if date_from else None,
            date_to=date_to.date() if date_to else None,
            allow_unsigned=allow_unsigned,
            progress=progress,
        )
    except AuditVerifyError as exc:
        click.echo(f"BROKEN {exc}", err=False)
        sys.exit(1)
    finally:
        if bar is not None:
            bar.close()
    secs = time.perf_counter() - t0
    for w in rep.warnings:
        click.echo(f"warning: {w}", err=True)
    rate = rep.entries / secs if secs > 0 else 0.0
    click.echo(
        f"intact: {rep.entries} entries in {rep.segments} segments "
        f"({rep.sealed_segments} sealed, open: {rep.open_segment or 'none'}), "
        f"{rep.checkpoints} checkpoints, {rep.pruned_segments} pruned, "
        f"{rep.recoveries} crash recoveries, {len(rep.unanchored)} not yet anchored "
        f"[{secs:.2f}s, {rate:,.0f} entries/s]"
    )


@worm.command()
@click.argument("pcs_id")
@click.option("--tenant", help="Only entries of this tenant.")
@base_option
def lineage(pcs_id: str, tenant: str | None, base: Path | None) -> None:
    """Every audit entry of PCS_ID: outcome, policy version, params hash, tenant, location.

    Looks in every audit chain of the server (``audit``, and ``audit-<i>`` of worker i).
    """
    rows = lineage_all(_base(base), pcs_id, tenant)
    if not rows:
        raise AuditError(f"no audit entry for pcs_id {pcs_id}")
    for row in rows:
        click.echo(json.dumps(row, sort_keys=True))


@worm.command()
@click.argument("pcs_id")
@click.option("--tenant", help="Only entries of this tenant.")
@click.option("--all", "all_", is_flag=True, help="One proof per line for every sealed entry.")
@base_option
def prove(pcs_id: str, tenant: str | None, all_: bool, base: Path | None) -> None:
    """Print an inclusion proof (canonical JSON) of PCS_ID's first sealed entry."""
    proofs = build_proofs(_base(base), pcs_id, tenant)
    if len(proofs) > 1 and not all_:
        click.echo(f"note: {len(proofs)} sealed entries; showing the first (--all)", err=True)
        proofs = proofs[:1]
    for p in proofs:
        click.echo(proof_bytes(p).decode(), nl=False)


@worm.command("check-proof")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--root", "root_hex", required=True, help="Trusted segment root (64 hex).")
@click.option("--pubkey", help="Audit public key (base64) to pin.")
def check_proof_cmd(file: Path, root_hex: str, pubkey: str | None) -> None:
    """Verify a proof file offline against a trusted root."""
    key = parse_ed25519_public(pubkey, what="--pubkey") if pubkey else None
    try:
        entry = check_proof(file.read_bytes(), root_hex, public_key=key)
    except (ProofError, AuditError) as exc:
        click.echo(f"INVALID: {exc}")
        sys.exit(1)
    click.echo(
        f"valid: pcs_id {entry.get('pcs_id')} ({entry.get('verify_outcome')}) is in the tree "
        f"with root {root_hex}"
    )


@worm.command()
@base_option
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Audit key, used when no server holds the log [default: $AUDIT_KEY_PATH or "
    f"$DATA_DIR/audit/{AUDIT_KEY_FILE}].",
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for a server.")
def seal(base: Path | None, key_file: Path | None, timeout: float) -> None:
    """Seal the open segment now (ask the running server, or seal directly if none runs)."""
    b = _base(base)
    conf = _settings()
    kpath = key_file or conf.key_path or conf.data_dir / "audit" / AUDIT_KEY_FILE
    vkey = b / VKEY_NAME
    origin = parse_vkey(vkey.read_text())[0] if vkey.exists() else None
    key = load_or_create_audit_key_readonly(kpath)
    writer = WormWriter(b, signing_key=key, origin=origin or "fractal-lba/audit/local")
    try:
        rep = writer.open()  # recovery seals the open segment
    except AuditLockedError:
        _ask_server(b, timeout)
        return
    writer.close(seal=True)
    click.echo(f"sealed: {rep.sealed_on_recovery}" if rep.sealed_on_recovery else "nothing open")


def _ask_server(base: Path, timeout: float) -> None:
    req = base / SEAL_REQUEST_NAME
    req.touch()
    deadline = time.monotonic() + timeout
    while req.exists():
        if time.monotonic() > deadline:
            raise AuditError(f"the server did not seal within {timeout:.0f}s ({req} left)")
        time.sleep(0.2)
    click.echo("sealed by the running server")


_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@worm.command("prune")
@click.option("--older-than", required=True, help="Retention, e.g. 90d, 12h, 4w.")
@base_option
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
def prune_cmd(older_than: str, base: Path | None, dry_run: bool) -> None:
    """Delete sealed, anchored segments older than the retention."""
    m = _DURATION.fullmatch(older_than.strip())
    if m is None:
        raise FlkError(f"--older-than {older_than!r}: expected <number><s|m|h|d|w>")
    res = prune_log(_base(base), int(m.group(1)) * _UNITS[m.group(2)], dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for rel in res.segments:
        click.echo(f"{verb} {rel}")
    click.echo(
        f"{verb} {len(res.segments)} segments"
        + (f"; kept from {res.stopped_at} ({res.reason})" if res.stopped_at else "")
    )


@worm.command()
@base_option
def reindex(base: Path | None) -> None:
    """Rebuild the lineage index from the segments (stop the server first)."""
    b = _base(base)
    try:
        with directory_lock(b):
            n = reindex_log(b)
    except AuditLockedError:
        raise AuditError(
            "the log is held by a running server; stop it (or delete lineage.sqlite and restart "
            "it: the server rebuilds the index on start)"
        ) from None
    click.echo(f"indexed {n} entries")
