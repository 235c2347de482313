"""Durable, private file-system primitives shared by every component that writes files.

One copy of each: :func:`fsync_dir` (make a created, renamed or removed directory entry
durable), :func:`atomic_write` (temp file + fsync + rename + directory fsync: readers see
the old or the new content, never a partial file), :func:`create_exclusive` (the same, but
only when the file does not exist yet: the first of several racing creators wins), and
:func:`private_dir` / :data:`PRIVATE_FILE_MODE` (SPEC section 11: files under ``DATA_DIR``
are 0600 in 0700 directories).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def fsync_dir(path: Path) -> None:
    """fsync directory ``path`` so a created/renamed/removed entry in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; return it.

    An existing directory keeps its mode (an operator may have chosen it on purpose).
    """
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    return path


def atomic_write(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically and durably (file created with ``mode``).

    The temp file is created next to the target with ``O_EXCL | O_NOFOLLOW`` (a planted
    file or symlink is never written through) and removed again if anything fails.
    """
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def create_exclusive(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> bool:
    """Create ``path`` holding ``data`` unless it exists; True when this call created it.

    The content appears whole or not at all (a private temp file, fsync'd, then ``link``,
    which fails when the name exists), so processes racing to create one file (workers
    making a local key at startup) agree on it: the first link wins, the others read it.
    """
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_dir(directory)
        return True
    finally:
        tmp.unlink(missing_ok=True)
