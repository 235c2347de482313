"""Quality targets on the committed labelled corpus (SPEC section 8): >= 0.97 precision and
recall per type; the corpus is what its seeded generator produces, and big enough."""

from __future__ import annotations

from collections import Counter

import pytest
from bench.pii_corpus import OUT, build, dumps, load
from bench.pii_quality import evaluate, ours

from fractal_lba.privacy import BUILTIN_TYPES


def test_corpus_is_reproducible_from_its_seed() -> None:
    assert OUT.read_text("utf-8") == dumps(build()), "run python -m bench.pii_corpus"


def test_corpus_size() -> None:
    rows = load()
    per_type = Counter(label[0] for r in rows for label in r["labels"])  # type: ignore[attr-defined]
    assert all(per_type[t] >= 300 for t in BUILTIN_TYPES), per_type
    assert sum(1 for r in rows if not r["labels"]) >= 1500


@pytest.fixture(scope="module")
def scores():  # type: ignore[no-untyped-def]
    return evaluate(load(), ours())


@pytest.mark.parametrize("pii_type", BUILTIN_TYPES)
def test_precision_and_recall_per_type(scores, pii_type: str) -> None:  # type: ignore[no-untyped-def]
    s = scores[pii_type]
    assert s.precision >= 0.97 and s.recall >= 0.97, (s.precision, s.recall, s.errors[:10])
