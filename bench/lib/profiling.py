"""py-spy (optional, not a project dependency) and the summary of its collapsed stacks."""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

Buckets = Sequence[tuple[str, tuple[str, ...]]]
"""Where a sample's time goes: (name, frame patterns); the first rule, leaf frame upward, that
one of the sample's frames matches."""


def find_py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def bucket_of(frames: Sequence[str], buckets: Buckets, other: str) -> str:
    for frame in reversed(frames):
        for name, patterns in buckets:
            if any(p in frame for p in patterns):
                return name
    return other


def summarize_profile(raw: Path, buckets: Buckets, other: str, top: int = 15) -> dict[str, Any]:
    """Shares of py-spy's samples: per bucket, and the top functions by own time (with their
    inclusive share)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    shares: Counter[str] = Counter()
    total = 0
    for stack, n in samples(raw):
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
        shares[bucket_of(frames, buckets, other)] += n
    total = max(total, 1)
    return {
        "samples": total,
        "buckets": {k: 100 * v / total for k, v in shares.items()},
        "top": [(f, 100 * n / total, 100 * incl[f] / total) for f, n in own.most_common(top)],
    }


def samples(raw: Path) -> Iterator[tuple[list[str], int]]:
    """(frames root first, sample count) for each line of py-spy's collapsed (`raw`) output."""
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)
