"""Child process of the multi-process race test (run as a script, not collected).

Opens the store described by the JSON config in argv[1], prints ``ready``, waits for a line
on stdin, then races ``put_if_absent`` on every key with its own outcome (starting at its
own offset) and prints ``{key: winner_request_id}`` as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from fractal_lba.stores import StoredOutcome, create_store


async def main(config: dict[str, str | int]) -> None:
    store = create_store(
        str(config["backend"]),
        data_dir=Path(str(config["data_dir"])),
        redis_url=str(config["redis_url"]),
        postgres_dsn=str(config["postgres_dsn"]),
        namespace=str(config["namespace"]),
        op_timeout=10.0,
    )
    await store.open()
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        me = str(config["worker"])
        mine = StoredOutcome(200, me.encode(), "00" * 32, me, 1.0)
        n = int(config["keys"])
        # Each worker starts at its own offset, so workers meet on keys at different times
        # (and some keys are hit by several workers at once) instead of one batch winning all.
        start = int(config["offset"])
        keys = [f"key-{(start + i) % n}" for i in range(n)]
        # Phase 1: every worker fires the same hot keys at once (simultaneous contention).
        hot = [f"hot-{i}" for i in range(20)]
        winners = await asyncio.gather(
            *(store.put_if_absent("tenant", key, mine, 3600.0) for key in hot)
        )
        result = {key: w.request_id for key, w in zip(hot, winners, strict=True)}
        # Phase 2: sequential puts from per-worker offsets.
        for key in keys:
            result[key] = (await store.put_if_absent("tenant", key, mine, 3600.0)).request_id
        print(json.dumps(result))
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
