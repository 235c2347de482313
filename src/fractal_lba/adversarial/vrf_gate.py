"""Step 6 of the submit path (SPEC sections 4 and 8): does the PCS carry a valid VRF proof?

A tenant that requires VRF has a public key and a mode. For each PCS the gate checks, in
order (the first failure is the reason):

1. ``vrf`` is present                                     -> ``missing``       (field ``vrf``)
2. proof and output are base64 of 80 / 64 bytes           -> ``malformed``     (``vrf.proof`` /
   ``vrf.output``; strict parsing normally refuses these earlier with a 400)
3. ``vrf.output`` equals the proof's beta                 -> ``output_mismatch`` (``vrf.output``)
4. ``seed`` = first 8 bytes of beta, big-endian, & 2^53-1 -> ``seed_mismatch``  (``seed``)
5. the proof verifies for alpha = ``tenant|shard_id|epoch`` -> the ECVRF reason (``vrf.proof``):
   ``proof_invalid``, ``gamma_invalid``, ``s_out_of_range``

Cheap checks first: beta costs about a tenth of a verification, so a PCS whose seed was
chosen by the agent (or whose output was tampered with) is refused without paying for the
proof; a proof that malformed beta already refuses keeps its ECVRF reason.

Alpha binds the proof to the tenant the PCS is submitted as and to its shard and epoch, so a
proof made with another tenant's key, or replayed for another epoch, fails at 3.

Pure: :meth:`VrfGate.check` returns a :class:`VrfFailure` or ``None``; what a failure does
(401 in ``enforce``, a metric and an audit note in ``report_only``) is the pipeline's.
:func:`seeded_proof` is the agent's side of the same contract.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from fractal_lba.adversarial.vrf import (
    OUTPUT_BYTES,
    PROOF_BYTES,
    VrfError,
    VrfPublicKey,
    alpha_for,
    proof_to_hash,
    prove,
    seed_from_output,
    unverified_output,
)
from fractal_lba.contract import PCS, VRFProof

VrfMode = Literal["enforce", "report_only"]

REASONS: tuple[str, ...] = (
    "missing",
    "malformed",
    "proof_invalid",
    "gamma_invalid",
    "s_out_of_range",
    "output_mismatch",
    "seed_mismatch",
)
"""Every failure reason (a fixed vocabulary: metric label values and audit reasons)."""


@dataclass(frozen=True, slots=True)
class VrfFailure:
    """Why a PCS failed the VRF gate: stable ``reason``, the ``field`` at fault, a detail
    that never contains the record's values."""

    reason: str
    field: str
    detail: str

    @property
    def audit_reason(self) -> str:
        """``vrf_invalid:<reason>``: the reason written to the audit log."""
        return f"vrf_invalid:{self.reason}"


@dataclass(frozen=True, slots=True)
class VrfGate:
    """One tenant's VRF requirement, prepared once (key decoded and validated at startup)."""

    tenant_id: str
    key: VrfPublicKey
    mode: VrfMode

    @classmethod
    def for_tenant(cls, tenant_id: str, public_key: bytes, mode: VrfMode) -> VrfGate:
        """Validate ``public_key`` (raises :class:`VrfError`) and build the gate."""
        return cls(tenant_id, VrfPublicKey.from_bytes(public_key), mode)

    @property
    def enforce(self) -> bool:
        """True when a failure is refused (401), False when it is only reported."""
        return self.mode == "enforce"

    def check(self, pcs: PCS) -> VrfFailure | None:
        """The first failed condition of the module docstring, or None when all hold."""
        vrf = pcs.vrf
        if vrf is None:
            return VrfFailure("missing", "vrf", "this tenant requires a VRF proof (version >= 0.2)")
        proof = _b64(vrf.proof, PROOF_BYTES)
        if proof is None:
            return VrfFailure("malformed", "vrf.proof", f"must be base64 of {PROOF_BYTES} bytes")
        output = _b64(vrf.output, OUTPUT_BYTES)
        if output is None:
            return VrfFailure("malformed", "vrf.output", f"must be base64 of {OUTPUT_BYTES} bytes")
        try:
            beta = unverified_output(proof)
        except VrfError as exc:
            return _proof_failure(exc)
        if not hmac.compare_digest(beta, output):
            return VrfFailure("output_mismatch", "vrf.output", "output is not the proof's hash")
        if pcs.seed != seed_from_output(beta):
            return VrfFailure("seed_mismatch", "seed", "seed is not derived from the VRF output")
        try:
            self.key.check_proof(alpha_for(self.tenant_id, pcs.shard_id, pcs.epoch), proof)
        except VrfError as exc:
            return _proof_failure(exc)
        return None

    def __repr__(self) -> str:
        return f"VrfGate(tenant_id={self.tenant_id!r}, mode={self.mode!r})"


class GateRunner:
    """Runs :meth:`VrfGate.check` inline, or on ``threads`` worker threads.

    libsodium releases the GIL inside each curve operation (cffi), so with threads the event
    loop keeps serving other requests while a proof is verified and a second core can share
    the work; inline costs no thread hand-off. Chosen by ``VRF_VERIFY_THREADS``.
    """

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def check(self, gate: VrfGate, pcs: PCS) -> VrfFailure | None:
        """The gate's verdict on ``pcs``."""
        if self.threads == 0:
            return gate.check(pcs)
        if self._pool is None:  # started on first use, again after close()
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="flk-vrf")
        return await asyncio.get_running_loop().run_in_executor(self._pool, gate.check, pcs)

    def close(self) -> None:
        """Stop the worker threads (pending checks finish first)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def seeded_proof(sk: bytes, tenant_id: str, shard_id: str, epoch: int) -> tuple[int, VRFProof]:
    """The agent's side: the ``seed`` and ``vrf`` field a PCS of this tenant, shard and epoch
    must carry (the proof over alpha, and the seed derived from its output)."""
    pi = prove(sk, alpha_for(tenant_id, shard_id, epoch))
    beta = proof_to_hash(pi)
    field = VRFProof(proof=base64.b64encode(pi).decode(), output=base64.b64encode(beta).decode())
    return seed_from_output(beta), field


def _proof_failure(exc: VrfError) -> VrfFailure:
    reason = exc.reason if exc.reason in REASONS else "proof_invalid"
    return VrfFailure(reason, "vrf.proof", "proof does not verify for this tenant, shard and epoch")


def _b64(text: str, size: int) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None
