"""Build and sign a PCS from events (SPEC sections 2 and 3)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from fractal_lba.agent.errors import KeySourceError
from fractal_lba.agent.events import Events
from fractal_lba.contract import (
    FT,
    LATEST_VERSION,
    PCS,
    SCHEMA,
    Signer,
    compute_pcs_id,
    make_signer,
    signing_input,
    validate_pcs,
)
from fractal_lba.signals import DEFAULT_PARAMS, SignalParams, compute_signals

DEFAULT_SCALES: tuple[int, ...] = (2, 4, 8, 16, 32)
DEFAULT_SEED = 42


def utc_now() -> str:
    """Current time as RFC 3339 UTC with a ``Z`` suffix, second precision."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_pcs(
    events: Events,
    *,
    shard_id: str,
    epoch: int,
    signer: Signer,
    scales: Sequence[int] = DEFAULT_SCALES,
    seed: int = DEFAULT_SEED,
    version: str = LATEST_VERSION,
    sent_at: str | None = None,
    outbox_seq: int = 0,
    meta: Mapping[str, str] | None = None,
    params: SignalParams = DEFAULT_PARAMS,
) -> PCS:
    """Compute the signals of ``events``, sign them and return a validated PCS.

    The result passes :func:`~fractal_lba.contract.validate_pcs` (fail closed: a bug that
    would put an invalid PCS on the wire raises here instead).
    """
    sig = compute_signals(events.points, events.timestamps, scales, seed, params)
    pcs_id = compute_pcs_id(sig.merkle_root, epoch, shard_id)
    pcs = PCS(
        pcs_id=pcs_id,
        schema=SCHEMA,
        version=version,
        shard_id=shard_id,
        epoch=epoch,
        attempt=1,
        sent_at=sent_at if sent_at is not None else utc_now(),
        seed=seed,
        scales=sig.scales,
        N_j=sig.N_j,
        coh_star=sig.coh_star,
        v_star=sig.v_star,
        D_hat=sig.D_hat,
        r=sig.r,
        regime=sig.regime,
        budget=sig.budget,
        merkle_root=sig.merkle_root,
        ft=FT(outbox_seq=outbox_seq) if outbox_seq else None,
        meta=dict(meta) if meta else None,
    )
    pcs.sig = signer.sign(signing_input(signer.alg, pcs.version, pcs.signed_payload()))
    return validate_pcs(pcs)


def read_key_text(source: str) -> str:
    """Resolve ``--key``: literal key text, ``@path`` (file contents) or ``env:VAR``.

    One trailing newline of a key file is dropped. Messages name the file or variable,
    never the key.
    """
    if source.startswith("@"):
        path = Path(source[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeySourceError(f"key file {path} not found") from None
        except UnicodeDecodeError:
            raise KeySourceError(f"key file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise KeySourceError(f"cannot read key file {path}: {exc.strerror}") from None
        text = text.removesuffix("\n").removesuffix("\r")
    elif source.startswith("env:"):
        var = source[len("env:") :]
        value = os.environ.get(var)
        if value is None:
            raise KeySourceError(f"environment variable {var} is not set")
        text = value
    else:
        text = source
    if not text:
        raise KeySourceError("the key is empty")
    return text


def load_signer(alg: str, source: str) -> Signer:
    """A signer from a ``--key`` source; KeyFormatError when the key text is malformed."""
    return make_signer(alg, read_key_text(source))
