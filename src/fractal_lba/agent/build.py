"""Build and sign a PCS from events (SPEC sections 2 and 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from fractal_lba.adversarial.vrf_gate import seeded_proof
from fractal_lba.agent.errors import AgentError, KeySourceError
from fractal_lba.agent.events import Events
from fractal_lba.config import named_variable
from fractal_lba.contract import (
    FT,
    LATEST_VERSION,
    PCS,
    SCHEMA,
    Signer,
    compute_pcs_id,
    encode_pcs,
    make_signer,
    sign_record,
    signing_input,
    validate_pcs,
)
from fractal_lba.signals import DEFAULT_PARAMS, SignalParams, compute_signals
from fractal_lba_client.contract import DEFAULT_TENANT, FULL_RECORD_VERSIONS

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
    vrf_key: bytes | None = None,
    tenant_id: str = DEFAULT_TENANT,
) -> PCS:
    """Compute the signals of ``events``, sign them and return a validated PCS.

    The result passes :func:`~fractal_lba.contract.validate_pcs` (fail closed: a bug that
    would put an invalid PCS on the wire raises here instead). With ``vrf_key`` the seed is
    not ``seed`` but the one an ECVRF proof over ``tenant_id|shard_id|epoch`` dictates, and
    the proof goes into ``vrf`` (SPEC section 8; version 0.2 or later).
    """
    vrf = None
    if vrf_key is not None:
        if version == "0.1":
            raise AgentError("a VRF proof needs PCS version 0.2 or later (--version)")
        seed, vrf = seeded_proof(vrf_key, tenant_id, shard_id, epoch)
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
        vrf=vrf,
    )
    return validate_pcs(sign_pcs(pcs, signer, tenant_id=tenant_id))


_structural = msgspec.json.Decoder(PCS)


def sign_pcs(pcs: PCS, signer: Signer, *, tenant_id: str | None = None) -> PCS:
    """Sign ``pcs`` in place and return it: the one place the agent signs.

    0.1 / 0.2 sign the 8-field payload; full-record versions (0.3) sign the whole record
    bound to ``tenant_id`` (the SDK's ``sign_record``; ``default`` when single-tenant).
    """
    if pcs.version in FULL_RECORD_VERSIONS:
        pcs.sig = sign_record(msgspec.to_builtins(pcs), signer, tenant_id or DEFAULT_TENANT)
    else:
        pcs.sig = signer.sign(signing_input(signer.alg, pcs.version, pcs.signed_payload()))
    return pcs


def stamp_attempt(
    body: bytes, attempt: int, *, signer: Signer | None, tenant_id: str | None
) -> bytes:
    """The queued PCS ``body`` with ``attempt`` set, re-signed when the signature covers it.

    0.1 / 0.2 sign 8 fields, so setting ``attempt`` needs no key. Later versions sign the
    whole record: with a ``signer`` the PCS is re-signed (microseconds for HMAC, tens for
    Ed25519); without one it keeps the attempt it was queued with. The first attempt of a
    PCS queued with ``attempt`` 1 is sent as queued, byte for byte.
    """
    pcs = _structural.decode(body)
    if pcs.attempt == attempt:
        return body
    if pcs.version not in FULL_RECORD_VERSIONS:
        pcs.attempt = attempt
    elif signer is not None:
        pcs.attempt = attempt
        sign_pcs(pcs, signer, tenant_id=tenant_id)
    else:
        return body
    return encode_pcs(pcs)


def stamp_outbox_seq(pcs: PCS, seq: int, *, signer: Signer | None, tenant_id: str | None) -> PCS:
    """A copy of ``pcs`` with ``ft.outbox_seq = seq``, re-signed when the signature covers it
    (without a ``signer`` such a PCS is returned unchanged)."""
    signed = pcs.version in FULL_RECORD_VERSIONS
    if signed and signer is None:
        return pcs
    ft = pcs.ft if pcs.ft is not None else FT()
    out = msgspec.structs.replace(pcs, ft=msgspec.structs.replace(ft, outbox_seq=seq))
    if signed and signer is not None:
        sign_pcs(out, signer, tenant_id=tenant_id)
    return out


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
        value = named_variable(var)
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
