"""RFC 6962 Merkle tree hashing and proofs (pure functions, SHA-256, domain-separated).

Leaf hash ``sha256(0x00 || data)``, node hash ``sha256(0x01 || left || right)``, the empty tree
hashes to ``sha256(b"")``, and an odd node is promoted, never duplicated. Proof verification
follows transparency-dev/merkle and fails closed: ``verify_*`` raise :class:`ProofError`.
Used by the signals (``merkle_root`` of event rows) and by the audit log (segment roots,
inclusion proofs, checkpoints).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fractal_lba.errors import FlkError

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


class ProofError(FlkError):
    """A Merkle proof did not verify (or was malformed)."""

    code = "proof_invalid"


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash."""
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash over already-hashed leaves (bottom-up; odd last node promoted)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    sha = _sha256
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        level = [
            sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


def merkle_tree_hash(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of raw leaf data (RFC 6962 section 2.1)."""
    sha = _sha256
    return root_from_leaf_hashes([sha(b"\x00" + d).digest() for d in leaves])


def _split(n: int) -> int:
    """Largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path (RFC 6962 PATH) for leaf ``index`` among leaf hashes ``hashes``."""
    if not 0 <= index < len(hashes):
        raise ProofError(f"leaf index {index} outside tree of size {len(hashes)}")
    proof: list[bytes] = []
    lo, hi, m = 0, len(hashes), index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            proof.append(root_from_leaf_hashes(hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root_from_leaf_hashes(hashes[lo : lo + k]))
            lo, m = lo + k, m - k
    proof.reverse()
    return proof


def consistency_proof(hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """RFC 6962 PROOF(size1, D[n]) that the first ``size1`` leaves are a prefix of the tree."""
    n = len(hashes)
    if not 0 < size1 <= n:
        raise ProofError(f"size1 {size1} not in 1..{n}")

    def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        size = hi - lo
        if m == size:
            return [] if complete else [root_from_leaf_hashes(hashes[lo:hi])]
        k = _split(size)
        if m <= k:
            return [*subproof(m, lo, lo + k, complete), root_from_leaf_hashes(hashes[lo + k : hi])]
        return [*subproof(m - k, lo + k, hi, False), root_from_leaf_hashes(hashes[lo : lo + k])]

    return subproof(size1, 0, n, True)


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Hash ``seed`` up the inner proof levels: bit ``i`` of ``index`` says which side it is on."""
    for i, h in enumerate(proof):
        seed = node_hash(seed, h) if (index >> i) & 1 == 0 else node_hash(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like :func:`_chain_inner`, but only the levels where ``seed`` is a right child (the old
    tree's view: its left siblings only)."""
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = node_hash(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Hash ``seed`` up the right border of the tree, where every sibling is on the left."""
    for h in proof:
        seed = node_hash(h, seed)
    return seed


def _decomp(index: int, size: int) -> tuple[int, int]:
    """Split a proof for leaf ``index`` of a ``size`` tree into (inner, border) level counts:
    ``inner`` = levels below where the paths to ``index`` and to the last leaf ``size - 1``
    meet (bit length of their XOR); ``border`` = levels above it on the right border, one per
    set bit of ``index`` above ``inner``."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof; raises ProofError when malformed."""
    if index >= size or index < 0:
        raise ProofError(f"index {index} is beyond tree size {size}")
    if len(leaf) != 32 or any(len(h) != 32 for h in proof):
        raise ProofError("hashes must be 32 bytes")
    inner, border = _decomp(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {inner + border}")
    res = _chain_inner(leaf, proof[:inner], index)
    return _chain_border_right(res, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root``."""
    calc = root_from_inclusion_proof(index, size, leaf, proof)
    if calc != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise ProofError unless the tree of ``size2`` extends the tree of ``size1``."""
    if size1 == 0:
        raise ProofError("consistency with an empty tree proves nothing")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == size2:
        if proof:
            raise ProofError("size1 == size2 but proof is not empty")
        if root1 != root2:
            raise ProofError("size1 == size2 but roots differ")
        return
    if not proof:
        raise ProofError("empty proof")
    if any(len(h) != 32 for h in proof):
        raise ProofError("hashes must be 32 bytes")
    inner, border = _decomp(size1 - 1, size2)
    # shift: trailing zero bits of size1 = height of the complete subtree (2**shift leaves)
    # that ends the old tree; its root is a node of both trees, so the proof starts there.
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(f"wrong proof size {len(proof)}, want {start + inner + border}")
    rest = proof[start:]
    # mask: position of that subtree's root among the nodes of its level (size1 - 1 without
    # the ``shift`` bits below it): the path from there up, for both trees.
    mask = (size1 - 1) >> shift
    hash1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if hash1 != root1:
        raise ProofError("consistency proof does not lead to root1")
    hash2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if hash2 != root2:
        raise ProofError("consistency proof does not lead to root2")
