"""Durations in policy files: an integer and a unit (`36h`, `90d`, `2w`), or `forever`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from yaml import Node, ScalarNode

from retention.policy.nodes import INT_TAG, Where, is_null, kind

_UNITS: Final = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_DURATION: Final = re.compile(r"([0-9]+)([hdw])")
_SPELLED: Final = re.compile(r"([0-9]+)\s*(h|hours?|hrs?|d|days?|w|weeks?|wks?)", re.IGNORECASE)
_FRACTION: Final = re.compile(r"([0-9]*\.[0-9]+)\s*([hdw])")
_OTHER_UNIT: Final = re.compile(r"([0-9]+)\s*([A-Za-z]+)")
_HINT: Final = "write an integer and a unit h, d or w, e.g. `90d`"


class Invalid:
    """Marks a duration already reported as a problem."""


INVALID: Final = Invalid()


def words(duration: timedelta | None) -> str:
    """`90 days`, `36 hours`, `2 weeks`, `forever`."""
    if duration is None:
        return "forever"
    hours = int(duration.total_seconds()) // 3600
    for unit, size in (("week", 168), ("day", 24), ("hour", 1)):
        if hours % size == 0 and (hours or unit == "day"):
            count = hours // size
            return f"{count} {unit}" + ("" if count == 1 else "s")
    return str(duration)


def parse_duration(
    node: Node, where: Where, field: str, *, forever_ok: bool, zero_ok: bool
) -> timedelta | Invalid | None:
    """A duration node to a timedelta (None for `forever`), reporting any mistake."""
    example = "a duration like `90d`" + (" or `forever`" if forever_ok else "")
    if not isinstance(node, ScalarNode) or is_null(node):
        where.add(node, field, f"expected {example}, got {kind(node)}")
        return INVALID
    text = str(node.value).strip()
    problem = _problem(text, node.tag == INT_TAG, forever_ok=forever_ok, zero_ok=zero_ok)
    if problem is not None:
        where.add(node, field, problem)
        return INVALID
    if text == "forever":
        return None
    found = _DURATION.fullmatch(text)
    assert found is not None
    try:
        return int(found.group(1)) * _UNITS[found.group(2)]
    except OverflowError:
        where.add(node, field, f"`{text}` is too long; use `forever` to retain without end")
        return INVALID


def _problem(text: str, plain_int: bool, *, forever_ok: bool, zero_ok: bool) -> str | None:
    """What is wrong with a duration's text, or None when it is valid."""
    if text == "forever":
        if forever_ok:
            return None
        return "`forever` is only for retain_for; a deletion rule needs a duration like `90d`"
    if text.lower() == "forever":
        return f"`{text}`: did you mean `forever`?"
    found = _DURATION.fullmatch(text)
    if found:
        if len(found.group(1)) > 9:  # beyond timedelta's range (and int() of huge text)
            return f"`{text[:20]}...` is too long; use `forever` to retain without end"
        if int(found.group(1)) == 0 and not zero_ok:
            return f"`{text}` holds nothing; give a positive duration or `forever`"
        return None
    if text.startswith("-"):
        return f"negative duration `{text}`; durations must be 0 or more"
    if plain_int:
        return f"`{text}` has no unit: did you mean `{text}d`? ({_HINT})"
    spelled = _SPELLED.fullmatch(text)
    if spelled:
        unit = spelled.group(2)[0].lower()
        return f"bad duration `{text}`: did you mean `{spelled.group(1)}{unit}`?"
    fraction = _FRACTION.fullmatch(text)
    if fraction:
        hours = float(fraction.group(1)) * _UNITS[fraction.group(2)].total_seconds() / 3600
        better = f": did you mean `{int(hours)}h`?" if hours.is_integer() else f"; {_HINT}"
        return f"`{text}` is not a whole number{better}"
    other = _OTHER_UNIT.fullmatch(text)
    if other:
        unit = other.group(2)
        if unit.lower() in ("y", "yr", "year", "years"):
            return f"unknown unit `{unit}`: did you mean `{int(other.group(1)) * 365}d`?"
        return f"unknown unit `{unit}` in `{text}`; units are h (hours), d (days) and w (weeks)"
    return f"bad duration `{text}`; {_HINT}"
