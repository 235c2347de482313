"""fsutil: atomic, private writes that never leave a partial file or follow a planted link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fractal_lba.canonical_json import canonical_json
from fractal_lba.fsutil import atomic_write, create_exclusive, private_dir


def test_atomic_write_replaces_and_is_private(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_atomic_write_failure_keeps_old_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_private_dir_mode(tmp_path: Path) -> None:
    d = private_dir(tmp_path / "a" / "b")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert os.access(d, os.W_OK)


def test_canonical_json_is_the_sorted_compact_form() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == b'{"a":[1.5,"\\u00e9"],"b":1}'


def test_create_exclusive_first_creator_wins_and_content_is_whole(tmp_path: Path) -> None:
    target = tmp_path / "keys" / "local.key"
    assert create_exclusive(target, b"first\n") is True
    assert create_exclusive(target, b"second\n") is False
    assert target.read_bytes() == b"first\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["local.key"]  # no temp left
