"""PII scanner quality and speed on the labelled corpus (SPEC section 8 targets).

    .venv/bin/python -m bench.pii_quality            # P/R/F1 per type, Presidio, speed
    .venv/bin/python -m bench.pii_quality --errors   # also list every miss and false alarm

Quality is entity-level: a reported span counts as a true positive when it overlaps a
labelled span of the same type, otherwise as a false positive; a labelled span no report
overlaps is a false negative. Our scanner runs as the server runs it (default policy, the
row's ``key`` as context, threshold 0.5).

The reference is Microsoft Presidio's pattern recognizers (``EmailRecognizer``,
``PhoneRecognizer``, ``UsSsnRecognizer``, ``CreditCardRecognizer``, ``IpRecognizer``) run
directly on each string (no spaCy model, so no context words: the same information our
scanner gets from the text itself), all results kept as ``AnalyzerEngine`` does by default
(score threshold 0). Install it with ``pip install -e '.[bench]'``.

Speed: CPU microseconds to scan one maximal PCS (16 meta keys and values of 256 characters,
a 256-character shard id, 8 fallbacks), best of several rounds, for field contents without
PII (identifiers, versions, timestamps, hosts: the common case) and with PII in every value.
``sum(range(1000))`` is timed too, as a yardstick for how busy the machine was.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bench.pii_corpus import load
from fractal_lba.privacy import ScannedField, Scanner
from fractal_lba.privacy.findings import BUILTIN_TYPES

Span = tuple[str, int, int]
Detector = Callable[[str, str], list[Span]]


@dataclass
class Score:
    """Entity counts of one type."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def evaluate(rows: Iterable[dict[str, object]], detect: Detector) -> dict[str, Score]:
    """Per-type scores of ``detect`` over the corpus rows."""
    scores = {t: Score() for t in BUILTIN_TYPES}
    for row in rows:
        text, key = str(row["text"]), str(row.get("key", ""))
        labels = [(str(t), int(s), int(e)) for t, s, e in row["labels"]]  # type: ignore[attr-defined]
        found = [f for f in detect(text, key) if f[0] in scores]
        for f in found:
            if any(_overlaps(f, g) for g in labels):
                scores[f[0]].tp += 1
            else:
                scores[f[0]].fp += 1
                scores[f[0]].errors.append(f"FP {row['id']}: {text[f[1] : f[2]]!r} in {text!r}")
        for g in labels:
            if not any(_overlaps(f, g) for f in found):
                scores[g[0]].fn += 1
                scores[g[0]].errors.append(f"FN {row['id']}: {text[g[1] : g[2]]!r} in {text!r}")
    return scores


def ours(scanner: Scanner | None = None) -> Detector:
    s = scanner or Scanner()

    def detect(text: str, key: str) -> list[Span]:
        return [(m.type, m.start, m.end) for m in s.scan_text(text, key)]

    return detect


_PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "US_SSN": "ssn",
    "CREDIT_CARD": "credit_card", "IP_ADDRESS": "ip_address",
}  # fmt: skip


def presidio() -> Detector | None:
    """Presidio's pattern recognizers as a detector, or None when it is not installed."""
    try:
        from presidio_analyzer.predefined_recognizers import (  # type: ignore[import-not-found]
            CreditCardRecognizer,
            EmailRecognizer,
            IpRecognizer,
            PhoneRecognizer,
            UsSsnRecognizer,
        )
    except ImportError:
        return None
    recognizers = [
        EmailRecognizer(), PhoneRecognizer(), UsSsnRecognizer(), CreditCardRecognizer(),
        IpRecognizer(),
    ]  # fmt: skip

    def detect(text: str, key: str) -> list[Span]:
        out: list[Span] = []
        for r in recognizers:
            for res in r.analyze(text, r.supported_entities, None):
                kind = _PRESIDIO_TYPES.get(res.entity_type)
                if kind is not None:
                    out.append((kind, res.start, res.end))
        return out

    return detect


def maximal_fields(rng: random.Random, *, pii: bool) -> list[ScannedField]:
    """The scanned fields of a maximal PCS (16 meta keys/values of 256 chars, 256-char shard
    id, 8 fallbacks) with realistic non-PII content, or with PII in every meta value."""
    words = [
        "ingest-eu-west-1", "host-17", "build 2024.11.05", "v2.14.1", "ORD-2024-000123",
        "pod/web-7d4b9c8f6-x2x9z", "ts 2024-11-05T10:22:33Z", "region us-east-1", "retry=3",
        "sha 4f3a9c2e1b7d", "lat 48.8566", "shard 12 of 64", "queue depth 512", "p99 12ms",
    ]  # fmt: skip
    pii_values = [
        "owner alice.smith@corp.io", "call +44 20 7946 0958", "card 4539 1488 0343 6467",
        "ssn 536-90-4399", "client 10.20.30.40", "peer 2a00:1450:4001:82a::200e",
    ]  # fmt: skip

    def text(n: int, extra: str | None = None) -> str:
        parts = [extra] if extra else []
        while sum(len(p) + 1 for p in parts) < n:
            parts.append(rng.choice(words))
        return " ".join(parts)[:n]

    fields: list[ScannedField] = [ScannedField("shard_id", text(256))]
    for i in range(16):
        key = f"label_{i:02d}_" + "k" * 200
        value = text(256, rng.choice(pii_values) if pii else None)
        fields.append(ScannedField(f"meta.{key}", key[:256], "key"))
        fields.append(ScannedField(f"meta.{key}", value, "value", key))
    fields += [ScannedField(f"ft.fallbacks[{i}]", text(64)) for i in range(8)]
    return fields


def cpu_us(fn: Callable[[], object], rounds: int = 7, number: int = 200) -> float:
    """Best per-call CPU time in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - t0) / number)
    return best * 1e6


def speed(scanner: Scanner) -> dict[str, float]:
    rng = random.Random(14)
    clean = maximal_fields(rng, pii=False)
    dirty = maximal_fields(rng, pii=True)
    scanner.scan_fields(dirty)  # warm the phone-number cache as a live server would be
    return {
        "maximal PCS, no PII": cpu_us(lambda: scanner.scan_fields(clean)),
        "maximal PCS, PII in every meta value": cpu_us(lambda: scanner.scan_fields(dirty), 5, 50),
        "yardstick sum(range(1000))": cpu_us(lambda: sum(range(1000)), 5, 2000),
    }


def table(columns: Sequence[tuple[str, dict[str, Score]]]) -> str:
    head = f"{'type':<12}" + "".join(
        f" | {name + ' P':>13} {'R':>6} {'F1':>6}" for name, _ in columns
    )
    lines = [head, "-" * len(head)]
    for t in BUILTIN_TYPES:
        row = f"{t:<12}"
        for _, scores in columns:
            s = scores[t]
            row += f" | {s.precision:>13.3f} {s.recall:>6.3f} {s.f1:>6.3f}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PII scanner quality and speed")
    ap.add_argument("--errors", action="store_true", help="list misses and false alarms")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args(argv)
    rows = load()
    pos = sum(len(r["labels"]) for r in rows)  # type: ignore[arg-type]
    neg = sum(1 for r in rows if not r["labels"])
    print(f"corpus: {len(rows)} strings, {pos} labelled spans, {neg} hard negatives")
    columns = [("fractal-lba", evaluate(rows, ours()))]
    ref = presidio()
    if ref is None:
        print("presidio-analyzer is not installed (pip install -e '.[bench]'): no comparison")
    else:
        columns.append(("presidio", evaluate(rows, ref)))
    print(table(columns))
    if args.errors:
        for name, scores in columns:
            for t, s in scores.items():
                for e in s.errors:
                    print(f"[{name} {t}] {e}")
    if not args.no_speed:
        print("\nscan cost (CPU us per PCS, best of rounds):")
        for label, us in speed(Scanner()).items():
            print(f"  {label:<40} {us:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
