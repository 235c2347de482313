"""Segment checkpoints as C2SP ``tlog-checkpoint`` signed notes (pure functions).

A checkpoint commits to one sealed segment::

    <origin>
    <tree size>
    <base64 RFC 6962 root over the segment's leaves>
    segment <segment path relative to the log base dir>
    time <seal time, RFC 3339 UTC>
    chain <prev_hash of the segment's first entry> <entry_hash of its last entry>
    prev <sha256 hex of the previous checkpoint's full note text, zeros for the first>

    — <key name> <base64(4-byte key hash || 64-byte Ed25519 signature)>

The first three lines are the C2SP checkpoint; the four extension lines are ours (tooling that
does not know them ignores them). The signature covers the body (every line before the blank
line, final newline included); the key hash is the first 4 bytes of
``SHA-256(name || 0x0A || 0x01 || 32-byte public key)`` (signed-note Ed25519, type 0x01).
Leaves are the 32 raw bytes of each ``entry_hash``: ``leaf = SHA-256(0x00 || entry_hash)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fractal_lba.audit.errors import CheckpointError

ZERO_HASH = "0" * 64
SIG_PREFIX = "\u2014 "  # em dash + space, per signed-note
ED25519_TYPE = b"\x01"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    """Parsed body of a segment checkpoint (see module docstring for the text form)."""

    origin: str
    size: int
    root: bytes
    segment: str
    time: str
    first_prev: str
    last: str
    prev: str

    def body(self) -> str:
        """The note text that is signed (ends with a newline)."""
        root = base64.b64encode(self.root).decode("ascii")
        return (
            f"{self.origin}\n{self.size}\n{root}\n"
            f"segment {self.segment}\n"
            f"time {self.time}\n"
            f"chain {self.first_prev} {self.last}\n"
            f"prev {self.prev}\n"
        )


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise CheckpointError(f"invalid key name {name!r}: non-empty, no spaces, no '+'")


def key_hash(name: str, public: Ed25519PublicKey) -> bytes:
    """signed-note key hash: first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key)."""
    raw = name.encode("utf-8") + b"\n" + ED25519_TYPE + _raw_public(public)
    return hashlib.sha256(raw).digest()[:4]


def verifier_key(name: str, public: Ed25519PublicKey) -> str:
    """The ``name+hash+base64(0x01||key)`` verifier string used by note/witness tooling."""
    _check_name(name)
    kh = key_hash(name, public).hex()
    return f"{name}+{kh}+{base64.b64encode(ED25519_TYPE + _raw_public(public)).decode()}"


def note_hash(note: str) -> str:
    """SHA-256 hex of a full note text (what the next checkpoint's ``prev`` line holds)."""
    return hashlib.sha256(note.encode("utf-8")).hexdigest()


def sign_checkpoint(cp: Checkpoint, key: Ed25519PrivateKey | None, name: str) -> str:
    """Full signed-note text of ``cp``; without a key the note carries no signature line."""
    body = cp.body()
    if key is None:
        return body + "\n"
    _check_name(name)
    sig = key.sign(body.encode("utf-8"))
    blob = base64.b64encode(key_hash(name, key.public_key()) + sig).decode("ascii")
    return f"{body}\n{SIG_PREFIX}{name} {blob}\n"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_hash: bytes
    signature: bytes


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its body (with final newline) and its signature lines."""
    cut = note.find("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise CheckpointError("note has no blank line before its signatures")
    body, rest = note[: cut + 1], note[cut + 2 :]
    sigs: list[NoteSignature] = []
    for line in rest.split("\n")[:-1]:
        if not line.startswith(SIG_PREFIX):
            raise CheckpointError(f"malformed signature line {line[:40]!r}")
        parts = line[len(SIG_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise CheckpointError("signature line must be '— <name> <base64>'")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise CheckpointError("signature is not valid base64") from None
        if len(blob) < 5:
            raise CheckpointError("signature too short")
        if base64.b64encode(blob).decode("ascii") != parts[1]:
            raise CheckpointError("signature is not canonical base64")
        sigs.append(NoteSignature(parts[0], blob[:4], blob[4:]))
    return body, sigs


def parse_checkpoint(note: str) -> Checkpoint:
    """Parse a checkpoint note's body strictly (signatures are not checked here)."""
    body, _ = split_note(note)
    lines = body.split("\n")[:-1]
    if len(lines) != 7:
        raise CheckpointError(f"checkpoint body has {len(lines)} lines, expected 7")
    origin, size, root_b64, *ext = lines
    if not origin or origin != origin.strip():
        raise CheckpointError("checkpoint origin line is empty or padded")
    if not _SIZE.fullmatch(size):
        raise CheckpointError(f"tree size {size!r} is not a canonical decimal")
    try:
        root = base64.b64decode(root_b64, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError("root hash is not valid base64") from None
    if len(root) != 32 or base64.b64encode(root).decode() != root_b64:
        raise CheckpointError("root hash must be 32 bytes in canonical base64")
    fields: dict[str, list[str]] = {}
    for key, line in zip(("segment", "time", "chain", "prev"), ext, strict=True):
        parts = line.split(" ")
        if parts[0] != key:
            raise CheckpointError(f"expected extension line {key!r}, got {line[:40]!r}")
        fields[key] = parts[1:]
    chain, prev = fields["chain"], fields["prev"]
    if len(fields["segment"]) != 1 or len(fields["time"]) != 1:
        raise CheckpointError("segment/time extension lines take one value")
    if len(chain) != 2 or len(prev) != 1 or not all(_HEX64.fullmatch(h) for h in [*chain, *prev]):
        raise CheckpointError("chain/prev extension lines must hold 64-hex hashes")
    cp = Checkpoint(
        origin=origin,
        size=int(size),
        root=root,
        segment=fields["segment"][0],
        time=fields["time"][0],
        first_prev=chain[0],
        last=chain[1],
        prev=prev[0],
    )
    if cp.body() != body:
        raise CheckpointError("checkpoint body is not in canonical form")
    return cp


def verify_checkpoint(
    note: str, public: Ed25519PublicKey | None, *, allow_unsigned: bool = False
) -> Checkpoint:
    """Parse ``note`` and check its signature by ``public`` (key name = origin); fail closed.

    ``allow_unsigned`` (unsafe, for logs written without a key) accepts a note without any
    signature line; a note that has signatures must still carry a valid one.
    """
    cp = parse_checkpoint(note)
    body, sigs = split_note(note)
    if not sigs:
        if allow_unsigned:
            return cp
        raise CheckpointError("checkpoint is not signed")
    if public is None:
        raise CheckpointError("no public key to verify the checkpoint signature")
    want = key_hash(cp.origin, public)
    for sig in sigs:
        if sig.name == cp.origin and sig.key_hash == want:
            try:
                public.verify(sig.signature, body.encode("utf-8"))
            except InvalidSignature:
                raise CheckpointError("checkpoint signature does not verify") from None
            return cp
    raise CheckpointError("checkpoint carries no signature by the expected key")
