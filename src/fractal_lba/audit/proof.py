"""Inclusion proofs of audit entries against their sealed segment's checkpoint.

A proof file is one canonical JSON object (sorted keys, no spaces, one trailing newline)::

    {"checkpoint": NOTE, "entry": LINE, "entry_hash": HEX, "format": "fractal-lba/inclusion/v1",
     "leaf_hash": HEX, "leaf_index": I, "line": I+1, "proof": [HEX, ...], "root": HEX,
     "segment": REL, "tree_size": N, "vkey": "name+hash+base64" | null}

``entry`` is the exact segment line (canonical JSON); the leaf is ``SHA-256(0x00 || entry_hash
bytes)``. :func:`check_proof` needs nothing but the file and the trusted root (and optionally
the pinned public key): it re-derives the entry hash from the line, the leaf, the root from the
audit path, and checks the checkpoint (size, root, segment, signature). Because the file must
be canonical, changing any byte of it makes the check fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fractal_lba.audit.anchors import LEDGER_NAME, read_ledger
from fractal_lba.audit.checkpoint import (
    ED25519_TYPE,
    key_hash,
    parse_checkpoint,
    verifier_key,
    verify_checkpoint,
)
from fractal_lba.audit.errors import AuditError, AuditVerifyError, CheckpointError
from fractal_lba.audit.index import lineage
from fractal_lba.audit.segments import check_line, scan_segment
from fractal_lba.audit.writer import VKEY_NAME
from fractal_lba.canonical_json import canonical_json
from fractal_lba.merkle import (
    ProofError,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)

FORMAT = "fractal-lba/inclusion/v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEYS = {
    "checkpoint",
    "entry",
    "entry_hash",
    "format",
    "leaf_hash",
    "leaf_index",
    "line",
    "proof",
    "root",
    "segment",
    "tree_size",
    "vkey",
}


def proof_bytes(proof: dict[str, Any]) -> bytes:
    """The canonical file form of a proof."""
    return canonical_json(proof) + b"\n"


def parse_vkey(vkey: str) -> tuple[str, Ed25519PublicKey]:
    """Parse a ``name+hash+base64(0x01||key)`` verifier key; check its key hash."""
    try:
        name, kh, blob = vkey.strip().split("+", 2)
        raw = base64.b64decode(blob, validate=True)
    except (ValueError, binascii.Error):
        raise CheckpointError("malformed verifier key") from None
    if len(raw) != 33 or raw[:1] != ED25519_TYPE:
        raise CheckpointError("verifier key is not an Ed25519 (type 0x01) key")
    pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    if key_hash(name, pub).hex() != kh:
        raise CheckpointError("verifier key hash does not match its name and key")
    return name, pub


def build_proofs(base_dir: Path, pcs_id: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Inclusion proofs for every sealed entry of ``pcs_id`` (in log order).

    Raises AuditError when the pcs_id has no entry, or none in a sealed segment yet (then
    ``flk worm seal`` first). The segment is re-verified against its checkpoint first.
    """
    base = Path(base_dir)
    rows = lineage(base, pcs_id, tenant_id)
    if not rows:
        raise AuditError(f"no audit entry for pcs_id {pcs_id}")
    led = read_ledger(base / LEDGER_NAME)
    vkey_path = base / VKEY_NAME
    vkey = vkey_path.read_text().strip() if vkey_path.exists() else None
    proofs: list[dict[str, Any]] = []
    cache: dict[str, tuple[list[bytes], bytes, list[bytes]]] = {}
    for row in rows:
        rel = row["segment"]
        if rel not in led.checkpoints:
            continue
        note = led.checkpoints[rel][1]
        cp = parse_checkpoint(note)
        if rel not in cache:
            data = (base / rel).read_bytes()
            scan = scan_segment(data, rel, cp.first_prev)
            leaves = [leaf_hash(h) for h in scan.leaves]
            lines = data.split(b"\n")[:-1]
            cache[rel] = (leaves, data, lines)
            if len(leaves) != cp.size or root_from_leaf_hashes(leaves) != cp.root:
                raise AuditVerifyError("segment does not match its checkpoint", segment=rel)
        leaves, _, lines = cache[rel]
        idx = row["line"] - 1
        proofs.append(
            {
                "format": FORMAT,
                "segment": rel,
                "line": row["line"],
                "leaf_index": idx,
                "tree_size": cp.size,
                "entry": lines[idx].decode("ascii"),
                "entry_hash": row["entry_hash"],
                "leaf_hash": leaves[idx].hex(),
                "proof": [h.hex() for h in inclusion_proof(leaves, idx)],
                "root": cp.root.hex(),
                "checkpoint": note,
                "vkey": vkey,
            }
        )
    if not proofs:
        segs = ", ".join(sorted({r["segment"] for r in rows}))
        raise AuditError(
            f"pcs_id {pcs_id} is only in the open segment ({segs}), which is not sealed yet; "
            "run `flk worm seal` (or wait for rotation) and prove again"
        )
    return proofs


def _hex32(obj: dict[str, Any], key: str) -> bytes:
    val = obj.get(key)
    if not isinstance(val, str) or not _HEX64.fullmatch(val):
        raise ProofError(f"{key} must be 64 lowercase hex digits")
    return bytes.fromhex(val)


def check_proof(
    data: bytes, root_hex: str, *, public_key: Ed25519PublicKey | None = None
) -> dict[str, Any]:
    """Verify a proof file offline against the trusted ``root_hex``; return the entry dict.

    Raises ProofError (or CheckpointError) on any mismatch. ``public_key`` pins the log key;
    otherwise the checkpoint is checked with the proof's own ``vkey`` (it then proves the
    proof is self-consistent, while ``root_hex`` is what you trust).
    """
    try:
        obj = json.loads(data)
    except ValueError:
        raise ProofError("proof is not valid JSON") from None
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        raise ProofError(f"proof must be an object with exactly the keys {sorted(_KEYS)}")
    if proof_bytes(obj) != data:
        raise ProofError("proof file is not in canonical form (altered?)")
    if obj["format"] != FORMAT:
        raise ProofError(f"unknown proof format {obj['format']!r}")
    if not _HEX64.fullmatch(root_hex):
        raise ProofError("--root must be 64 lowercase hex digits")
    trusted = bytes.fromhex(root_hex)
    entry_hash, leaf, root = (_hex32(obj, k) for k in ("entry_hash", "leaf_hash", "root"))
    idx, size, line = obj["leaf_index"], obj["tree_size"], obj["line"]
    if not all(type(v) is int for v in (idx, size, line)) or line != idx + 1:
        raise ProofError("leaf_index/tree_size/line must be integers with line = leaf_index + 1")
    entry_line = obj["entry"]
    if not isinstance(entry_line, str) or not isinstance(obj["proof"], list):
        raise ProofError("entry must be a string and proof a list")
    try:
        _, h = check_line(entry_line.encode("utf-8"), str(obj["segment"]), line)
    except AuditVerifyError as exc:
        raise ProofError(f"entry line: {exc.what}") from None
    if h != entry_hash.hex():
        raise ProofError("entry_hash is not the hash of the entry line")
    if leaf_hash(entry_hash) != leaf:
        raise ProofError("leaf_hash is not SHA-256(0x00 || entry_hash)")
    path = [_hex32({"p": p}, "p") for p in obj["proof"]]
    verify_inclusion(idx, size, leaf, path, root)
    if root != trusted:
        raise ProofError("the proof's root is not the trusted root")
    note, vkey = obj["checkpoint"], obj["vkey"]
    if not isinstance(note, str) or not (vkey is None or isinstance(vkey, str)):
        raise ProofError("checkpoint must be a string, vkey a string or null")
    key = public_key
    if vkey is not None:
        name, embedded = parse_vkey(vkey)
        if public_key is not None and verifier_key(name, public_key) != vkey:
            raise ProofError("the proof's vkey is not the pinned public key")
        key = key or embedded
    cp = verify_checkpoint(note, key)
    if cp.size != size or cp.root != root or cp.segment != obj["segment"]:
        raise ProofError("checkpoint does not commit to this tree size / root / segment")
    return dict(json.loads(entry_line))
