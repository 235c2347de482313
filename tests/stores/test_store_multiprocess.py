"""First write wins across OS processes for the shared backends (sqlite, redis, postgres)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import SHARED_BACKENDS

from fractal_lba.stores import create_store

WORKER = Path(__file__).with_name("race_worker.py")
PROCESSES = 4
KEYS = 200


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_processes_racing_on_the_same_keys_agree_on_one_winner(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else "unused"
    dsn = request.getfixturevalue("postgres_dsn") if backend == "postgres" else "unused"
    base = {
        "backend": backend,
        "data_dir": str(tmp_path),
        "redis_url": redis_url,
        "postgres_dsn": dsn,
        "namespace": namespace,
        "keys": KEYS,
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                json.dumps({**base, "worker": f"proc-{i}", "offset": i * KEYS // PROCESSES}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    try:
        for proc in procs:  # barrier: every process has its store open
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    first = results[0]
    assert set(first) == {f"key-{i}" for i in range(KEYS)} | {f"hot-{i}" for i in range(20)}
    assert all(r == first for r in results), "processes disagree on a winner"
    assert set(first.values()) <= {f"proc-{i}" for i in range(PROCESSES)}

    async def stored() -> dict[str, str]:
        store = create_store(
            backend,
            data_dir=tmp_path,
            redis_url=redis_url,
            postgres_dsn=dsn,
            namespace=namespace,
        )
        await store.open()
        try:
            found = {}
            for key in first:
                got = await store.get("tenant", key)
                assert got is not None
                found[key] = got.request_id
            return found
        finally:
            await store.close()

    assert asyncio.run(stored()) == first
