"""GRIDS degradation grouping search (sec. 5.1, eq. 2-6, Alg. 1).

Find partitions of ``n`` degradations into the fewest groups ``m`` such that every group's
maximum performance drop (eq. 4)::

    dP(C) = max_{d in C} P(M_S(d), d) - P(M_M(C), d)  <=  delta

``verify(group) -> dP`` is a callback: in practice it trains the mix-trained model of the group
and tests it against the single-task models (``train/grids_group.py``); tests pass a proxy.
Every group is verified at most once (results are cached); singletons have ``dP = 0`` by
definition and are never verified.

Steps:

1. **Similarity preprocessing.** ``Lambda_L`` holds every group of ``L`` degradations, sorted by
   mean pairwise distance (from the similarity matrix) and, for near-equal means (equal after
   rounding to ``tie_digits``), by the variance of those distances.
2. **L_max.** Binary search on ``L`` verifying the top-ranked group of ``Lambda_L``.
3. **Filtering.** For each ``L <= L_max``, a binary search over the ranked ``Lambda_L`` finds the
   last group that passes; the groups ranked after it are discarded.
4. **Search (Alg. 1).** A binary search on ``m``; ``Solve(m)`` is a depth-first search over the
   filtered groups (larger groups first) for partitions into exactly ``m`` groups, verifying
   every group of a complete partition. To list each partition once, every new group must
   contain the first degradation not yet covered (the paper's DFS visits orderings too).

The result holds every feasible partition with the smallest ``m`` (eq. 6).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

Group = tuple  # a sorted tuple of degradation names
Verifier = Callable[[Group], float]


def rank_groups(names: Sequence[str], distance: torch.Tensor, size: int, tie_digits: int = 2) -> list[Group]:
    """``Lambda_size``: all groups of ``size`` names, most similar first (see the module docstring)."""
    index = {name: i for i, name in enumerate(names)}

    def key(group):
        values = torch.tensor([float(distance[index[a], index[b]]) for a, b in itertools.combinations(group, 2)])
        if len(values) == 0:
            return (0.0, 0.0, group)
        variance = values.var(unbiased=False).item()
        return (round(values.mean().item(), tie_digits), variance, group)

    return sorted((tuple(g) for g in itertools.combinations(sorted(names), size)), key=key)


@dataclass
class GroupingResult:
    """``partitions``: every feasible partition with the fewest groups; ``drops``: dP of each
    verified group; ``candidates``: the filtered ``Lambda_L`` per size; ``max_group_size``: L_max."""

    partitions: list
    drops: dict = field(default_factory=dict)
    candidates: dict = field(default_factory=dict)
    max_group_size: int = 1

    @property
    def num_groups(self) -> int:
        return len(self.partitions[0])


class _CachedVerifier:
    def __init__(self, verify: Verifier, delta: float):
        self.verify, self.delta, self.drops = verify, delta, {}

    def drop(self, group: Group) -> float:
        if len(group) == 1:
            return 0.0
        if group not in self.drops:
            self.drops[group] = float(self.verify(group))
        return self.drops[group]

    def passes(self, group: Group) -> bool:
        return self.drop(group) <= self.delta


def _last_passing(ranked: list[Group], check: _CachedVerifier) -> int:
    """Index of the last group that passes, assuming passing groups form a prefix (-1: none)."""
    low, high = -1, len(ranked) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if check.passes(ranked[middle]):
            low = middle
        else:
            high = middle - 1
    return low


def _partitions(names: list[str], candidates: dict[int, list[Group]], groups: int):
    """All partitions of ``names`` into exactly ``groups`` candidate groups (canonical order)."""
    by_first: dict[str, list[Group]] = {name: [] for name in names}
    for size in sorted(candidates, reverse=True):
        for group in candidates[size]:
            by_first[group[0]].append(group)
    largest = max(candidates)

    def search(remaining: tuple, chosen: list):
        if not remaining:
            if len(chosen) == groups:
                yield list(chosen)
            return
        slots = groups - len(chosen)
        if slots == 0 or len(remaining) > slots * largest:
            return
        left = set(remaining)
        for group in by_first[remaining[0]]:
            if left.issuperset(group):
                chosen.append(group)
                yield from search(tuple(n for n in remaining if n not in group), chosen)
                chosen.pop()

    yield from search(tuple(sorted(names)), [])


def group_search(names: Sequence[str], distance: torch.Tensor, verify: Verifier, delta: float = 0.7,
                 tie_digits: int = 2) -> GroupingResult:
    """Alg. 1 over ``names`` with the (n, n) ``distance`` (e.g. :func:`symmetric_distance` of S),
    in the order of ``names``. ``delta`` is the drop threshold in dB (GRIDS uses 0.7)."""
    names = list(names)
    if len(set(names)) != len(names) or not names:
        raise ValueError("names must be distinct and non-empty")
    if tuple(distance.shape) != (len(names), len(names)):
        raise ValueError(f"distance {tuple(distance.shape)} does not match {len(names)} names")
    check = _CachedVerifier(verify, delta)
    ranked = {size: rank_groups(names, distance, size, tie_digits) for size in range(1, len(names) + 1)}

    low, high = 1, len(names)  # L_max: the largest L whose top-ranked group passes
    while low < high:
        middle = (low + high + 1) // 2
        if check.passes(ranked[middle][0]):
            low = middle
        else:
            high = middle - 1
    max_size = low
    candidates = {1: ranked[1]}
    for size in range(2, max_size + 1):
        kept = ranked[size][:_last_passing(ranked[size], check) + 1]
        if kept:
            candidates[size] = kept

    def solve(groups: int) -> list:
        return [p for p in _partitions(names, candidates, groups) if all(check.passes(g) for g in p)]

    low, high = 1, len(names)  # the fewest groups with a feasible partition; n singletons always work
    best = solve(high)
    while low < high:
        middle = (low + high) // 2
        found = solve(middle)
        if found:
            high, best = middle, found
        else:
            low = middle + 1
    return GroupingResult(best, dict(check.drops), candidates, max_size)
