"""The Murmur3 token ring: ranges per replica ownership, sub-ranges, and `--slice i/n`.

Cassandra's Murmur3Partitioner (org.apache.cassandra.dht.Murmur3Partitioner)
maps a partition key to a signed 64-bit token; `Long.MIN_VALUE` is never a
token (`normalize` turns it into `Long.MAX_VALUE`), so the ring is the
half-open interval (MIN, MAX]. A node owns the ranges (previous token, its
token] (org.apache.cassandra.dht.Range is start-exclusive, end-inclusive), so
the scan uses exactly that shape: `token(pk) > start AND token(pk) <= end`.

Splitting first along ownership keeps every sub-range on one replica set (the
coordinator can read it from local replicas, no cross-node range merge); then
each is cut into equal parts so one sub-range fits comfortably in memory and a
checkpoint loses little work. Slices are contiguous runs of the sorted
sub-range list, so `--slice i/n` over n Indexed-Job pods covers the ring once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

MIN_TOKEN = -(2**63)
MAX_TOKEN = 2**63 - 1


@dataclass(frozen=True, slots=True, order=True)
class TokenRange:
    """Tokens t with start < t <= end."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not MIN_TOKEN <= self.start < self.end <= MAX_TOKEN:
            raise ValueError(f"invalid token range ({self.start}, {self.end}]")

    def contains(self, token: int) -> bool:
        return self.start < token <= self.end

    def halves(self) -> tuple[TokenRange, TokenRange] | None:
        """The two halves (drill-down), or None when the range holds a single token."""
        if self.end - self.start < 2:
            return None
        mid = self.start + (self.end - self.start) // 2
        return TokenRange(self.start, mid), TokenRange(mid, self.end)


def ownership_ranges(tokens: Iterable[int]) -> list[TokenRange]:
    """The ring cut at every node token: (prev, tok] per token, plus the wrap-around pieces."""
    ring = sorted(set(tokens))
    if not ring:
        return [TokenRange(MIN_TOKEN, MAX_TOKEN)]
    out: list[TokenRange] = []
    if ring[0] > MIN_TOKEN:
        out.append(TokenRange(MIN_TOKEN, ring[0]))  # the wrap-around range, first half
    out += [TokenRange(a, b) for a, b in pairwise(ring)]
    if ring[-1] < MAX_TOKEN:
        out.append(TokenRange(ring[-1], MAX_TOKEN))  # ... and its second half
    return out


def split(r: TokenRange, parts: int) -> list[TokenRange]:
    """`parts` contiguous sub-ranges of (nearly) equal width covering `r` exactly."""
    width = r.end - r.start
    parts = max(1, min(parts, width))
    bounds = [r.start + (width * i) // parts for i in range(parts + 1)]
    return [TokenRange(a, b) for a, b in pairwise(bounds)]


def plan(tokens: Iterable[int], subranges: int) -> list[TokenRange]:
    """Ownership ranges cut into about `subranges` pieces in total, in token order.

    Each ownership range gets a share proportional to its width (at least one),
    so sub-ranges are of similar width and, for a well-distributed key, size.
    """
    owned = ownership_ranges(tokens)
    total = sum(r.end - r.start for r in owned)
    out: list[TokenRange] = []
    for r in owned:
        out += split(r, max(1, round(subranges * (r.end - r.start) / total)))
    return out


def parse_slice(text: str) -> tuple[int, int]:
    """`i/n` (0 <= i < n), as Kubernetes' JOB_COMPLETION_INDEX over `completions`."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ValueError(f"--slice must look like i/n, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--slice {text}: need 0 <= i < n")
    return i, n


def slice_of(ranges: Sequence[TokenRange], i: int, n: int) -> list[TokenRange]:
    """The i-th of n contiguous, disjoint, jointly complete runs of `ranges`."""
    k = len(ranges)
    return list(ranges[(k * i) // n : (k * (i + 1)) // n])
