"""The submit path's step order is data (``fractal_lba.server.submit.SUBMIT_PATH``): held here
against SPEC section 4 (its verbatim copy in ``tests/data/spec/submit-path.md``), and the
running app is shown to run exactly those steps."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from server_helpers import CountingStore, body, make_pcs

from fractal_lba.server import pipeline
from fractal_lba.server.admission import ADMISSION_STEPS
from fractal_lba.server.pipeline import PIPELINE_STEPS, Pipeline
from fractal_lba.server.step import Step
from fractal_lba.server.submission import Reply, Submission
from fractal_lba.server.submit import SUBMIT_PATH

SPEC_COPY = Path(__file__).resolve().parents[1] / "data" / "spec" / "submit-path.md"

KNOWN_DEVIATIONS = {
    "tenant_rate_limit": "charged in admission (before the WAL) until issue 17 adds step 1's "
    "per-address admission limit and charges the tenant's own limits at 5b",
}
"""Steps that run elsewhere than their SPEC item says, each with the issue that moves it."""


def spec_steps() -> tuple[str, dict[str, str]]:
    """(the text before the numbered steps, {item number: its text}) in SPEC order."""
    text = SPEC_COPY.read_text("utf-8")
    preamble, marker, rest = text.partition("Order of steps")
    assert marker, "the SPEC copy lost its 'Order of steps' list"
    items: dict[str, str] = {}
    current: str | None = None
    for line in rest.splitlines():
        m = re.match(r"\s*(\d+b?)\. (.*)", line)
        if m:
            current = m.group(1)
            items[current] = m.group(2)
        elif current is not None and line.strip():
            items[current] += " " + line.strip()
    return preamble, items


def plain(text: str) -> str:
    return re.sub(r"[*`]", "", text).lower()


def test_the_spec_copy_has_every_step() -> None:
    _, items = spec_steps()
    assert list(items) == ["1", "2", "3", "4", "5", "5b", "6", "7", "8", "9", "10"]


def test_steps_run_in_spec_order_and_cover_every_spec_step() -> None:
    _, items = spec_steps()
    order = list(items)
    in_place = [s for s in SUBMIT_PATH if s.name not in KNOWN_DEVIATIONS]
    positions = [order.index(s.spec) for s in in_place]
    assert positions == sorted(positions), [(s.spec, s.name) for s in in_place]
    assert [s.spec for s in SUBMIT_PATH if s.spec not in order] == []
    assert {s.spec for s in SUBMIT_PATH} == set(order)


def test_each_step_is_named_after_its_spec_step() -> None:
    """A step's name is words of its SPEC item (for step 1: or of the endpoint line above)."""
    preamble, items = spec_steps()
    for step in SUBMIT_PATH:
        text = items[step.spec] + (" " + preamble if step.spec == "1" else "")
        words = step.name.replace("_", " ")
        assert words in plain(text), f"{step.name!r} is not in SPEC step {step.spec}"
    names = [s.name for s in SUBMIT_PATH]
    assert len(names) == len(set(names))


def test_known_deviations_are_still_out_of_place() -> None:
    """Moving a listed step to its SPEC place must also delete its entry above."""
    _, items = spec_steps()
    order = list(items)
    for name in KNOWN_DEVIATIONS:
        [i] = [i for i, s in enumerate(SUBMIT_PATH) if s.name == name]
        spec_pos = order.index(SUBMIT_PATH[i].spec)
        before = [order.index(s.spec) for s in SUBMIT_PATH[:i]]
        after = [order.index(s.spec) for s in SUBMIT_PATH[i + 1 :]]
        assert any(p > spec_pos for p in before) or any(p < spec_pos for p in after), name


def test_admission_then_pipeline() -> None:
    assert (*ADMISSION_STEPS, *PIPELINE_STEPS) == SUBMIT_PATH
    assert {s.spec for s in ADMISSION_STEPS} <= {"1", "2", "5b"}
    assert all(s.spec not in {"1", "2"} for s in PIPELINE_STEPS)


Make = Callable[..., Any]


@pytest.mark.anyio
async def test_a_tenant_runs_the_pipeline_steps_that_apply_to_it(make_harness: Make) -> None:
    """The gate slots (4, 6) are in no tenant's steps until their features land: they cost a
    request nothing."""
    async with make_harness() as h:
        [ctx] = h.app.tenants.table.contexts.values()
        names = [s.name for s in PIPELINE_STEPS if s.run in ctx.steps]
        assert names == [
            "parse", "signature_verification", "dedup_lookup", "verification", "dedup_write",
            "audit_append",
        ]  # fmt: skip
        assert ctx.steps == tuple(s.run for s in PIPELINE_STEPS if s.applies(ctx.tenant))


@pytest.mark.anyio
async def test_one_tuple_entry_adds_a_step_where_it_stands(
    make_harness: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a later feature does: a step function and one entry; it runs in its place (after
    the signature, before the dedup lookup) and can end the request."""
    seen: list[tuple[str, int]] = []
    stores: list[CountingStore] = []

    async def probe(p: Pipeline, s: Submission) -> Reply | None:
        assert s.pcs is not None and s.payload_hash  # steps 3 and 5 ran before
        seen.append((s.pcs.shard_id, stores[0].gets))
        if s.pcs.shard_id == "stop-here":
            return Reply(418, b'{"error":"probe"}', reason="probe")
        return None

    steps = list(PIPELINE_STEPS)
    at = [s.name for s in steps].index("dedup_lookup")
    steps.insert(at, Step("6", "vrf_verification", probe))
    monkeypatch.setattr(pipeline, "PIPELINE_STEPS", tuple(steps))
    async with make_harness() as h:
        stores.append(h.store)
        assert (await h.submit(body(make_pcs()))).status_code == 200
        stopped = await h.submit(body(make_pcs(shard_id="stop-here")))
    assert stopped.status_code == 418
    assert seen == [("shard-001", 0), ("stop-here", 1)]
