"""Which policies match a call, fast: the index behind `retention.policy.engine`.

It answers that one question, as a bitmask (bit i: the i-th policy matches), and
knows nothing of kinds, durations or decisions. Each part of a call that conditions
look at (`Condition.dimension`: the agent's four names, the region, one metadata key,
...) is read once per call; the policies a value there satisfies form a bitmask, and
a call's matching policies are the AND of its parts' masks. Where calls share values
(`Condition.repeats`) the mask is memoised by value; memos are cleared when full, so
memory never grows with the number of calls. A new kind of condition needs no change
here: the index reads every condition through its `part` and `holds` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Final

from retention.api.models import Call
from retention.policy.match import Condition, Listed

MEMO_LIMIT: Final = 8192

Test = Callable[[object], bool]


class _Dimension:
    """One part of a call -> bitmask of the policies whose conditions there it meets."""

    __slots__ = ("bound", "free", "memo", "part", "tests")

    def __init__(
        self,
        part: Callable[[Call, Listed], Hashable],
        free: int,
        tests: Sequence[tuple[int, Test]],
    ) -> None:
        self.part = part  # reads this part of a call (any of its conditions' `part`)
        self.free = free  # policies with no condition here match any value
        self.bound = sum(bit for bit, _ in tests)  # policies with a condition here
        self.tests = tuple(tests)
        self.memo: dict[Hashable, int] = {}

    def mask(self, value: Hashable) -> int:
        mask = self.free
        for bit, test in self.tests:
            if test(value):
                mask |= bit
        return mask

    def remember(self, value: Hashable) -> int:
        """The mask for a value not in the memo, remembered for next time."""
        mask = self.mask(value)
        if len(self.memo) >= MEMO_LIMIT:
            self.memo.clear()
        self.memo[value] = mask
        return mask


def _all_of(tests: tuple[Test, ...]) -> Test:
    return lambda value: all(test(value) for test in tests)


def _dimension(count: int, by_policy: dict[int, list[Condition]]) -> _Dimension:
    """The dimension of conditions looking at one part of a call, by policy position."""
    tests: list[tuple[int, Test]] = []
    for i, mine in by_policy.items():
        test = mine[0].holds if len(mine) == 1 else _all_of(tuple(c.holds for c in mine))
        tests.append((1 << i, test))
    bound = sum(bit for bit, _ in tests)
    first = next(iter(by_policy.values()))[0]
    return _Dimension(first.part, ((1 << count) - 1) & ~bound, tests)


class PolicyIndex:
    """Which of a fixed sequence of policies, given by their conditions, match a call."""

    def __init__(self, conditions: Sequence[Sequence[Condition]]) -> None:
        self.everyone = (1 << len(conditions)) - 1
        parts: dict[str, dict[int, list[Condition]]] = {}
        repeats: dict[str, bool] = {}
        for i, mine in enumerate(conditions):
            for condition in mine:
                parts.setdefault(condition.dimension, {}).setdefault(i, []).append(condition)
                repeats[condition.dimension] = condition.repeats
        dimensions = {name: _dimension(len(conditions), found) for name, found in parts.items()}
        # (how to read the part, its memo's lookup, the dimension): unpacked, not looked up.
        self._memoised = tuple(
            (d.part, d.memo.get, d) for name, d in dimensions.items() if repeats[name]
        )
        # Values nearly unique per call (phone numbers, start times): no memo, and read
        # only when a policy still in the running has a condition there.
        self._unmemoised = tuple(d for name, d in dimensions.items() if not repeats[name])

    def mask(self, call: Call, listed: Listed) -> int:
        """The bitmask of the policies whose every condition the call meets."""
        mask = self.everyone
        for part, memo, dimension in self._memoised:
            value = part(call, listed)
            found = memo(value)
            mask &= dimension.remember(value) if found is None else found
        for dimension in self._unmemoised:
            if mask & dimension.bound:
                mask &= dimension.mask(dimension.part(call, listed))
        return mask
