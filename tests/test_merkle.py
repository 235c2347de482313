"""RFC 6962 proofs: every transparency-dev vector, plus generate-then-verify round trips."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from fractal_lba.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_tree_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "data" / "vectors" / "rfc6962"
FILES = sorted(VECTORS.rglob("*.json"))


def _b(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def test_vectors_present() -> None:
    assert len(FILES) > 150


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(VECTORS)))
def test_rfc6962_vector(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    proof = [_b(p) for p in (v["proof"] or [])]
    try:
        if "leafIdx" in v:
            verify_inclusion(v["leafIdx"], v["treeSize"], _b(v["leafHash"]), proof, _b(v["root"]))
        else:
            verify_consistency(v["size1"], v["size2"], proof, _b(v["root1"]), _b(v["root2"]))
    except ProofError:
        assert v["wantErr"], f"unexpected failure: {v['desc']}"
    else:
        assert not v["wantErr"], f"tampered case accepted: {v['desc']}"


def test_known_roots() -> None:
    assert merkle_tree_hash([]) == EMPTY_ROOT
    assert merkle_tree_hash([b""]).hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    # 3 leaves: node(node(l0,l1), l2) -- the odd leaf is promoted, not duplicated.
    l0, l1, l2 = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    import hashlib

    n01 = hashlib.sha256(b"\x01" + l0 + l1).digest()
    assert merkle_tree_hash([b"a", b"b", b"c"]) == hashlib.sha256(b"\x01" + n01 + l2).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 33])
def test_generated_proofs_verify_and_tamper_fails(size: int) -> None:
    hashes = [leaf_hash(os.urandom(8)) for _ in range(size)]
    root = root_from_leaf_hashes(hashes)
    for i in range(size):
        proof = inclusion_proof(hashes, i)
        verify_inclusion(i, size, hashes[i], proof, root)
        if proof:
            bad = [bytearray(p) for p in proof]
            bad[0][0] ^= 1
            with pytest.raises(ProofError):
                verify_inclusion(i, size, hashes[i], [bytes(p) for p in bad], root)
    for m in range(1, size + 1):
        verify_consistency(
            m, size, consistency_proof(hashes, m), root_from_leaf_hashes(hashes[:m]), root
        )
