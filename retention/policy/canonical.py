"""The one canonical text a metadata value is compared in, for policies and the API alike.

- Booleans: `true`/`false`, whatever the letter case (`True`, `"TRUE"`, JSON `true`).
- Decimal numerals compare by value: `1`, `1.0`, `"1"`, `+1`, `1e0` are all `1`;
  `7.50` is `7.5`; `-0` is `0`. Small values are written out in full (`1e3` is
  `1000`), very large or very small ones in a fixed scientific form (`1e+300`).
  A numeral longer than `MAX_NUMERAL` characters is compared as written.
- Any other text is itself (case-sensitive); non-finite floats are `inf`/`-inf`/`nan`.
- JSON null is no value; a list or an object is not a scalar and matches nothing.

The function is idempotent: the canonical text of a canonical text is itself, so a
memo may be keyed by either.
"""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Final

MAX_NUMERAL: Final = 100
# Up to this many digits before or after the point, a number is written out in full.
_FULL_DIGITS: Final = 40
_NUMERAL: Final = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
# Exact for any numeral of MAX_NUMERAL characters, and any exponent.
_EXACT: Final = Context(prec=2 * MAX_NUMERAL, Emax=MAX_EMAX, Emin=MIN_EMIN)
_BOOLEANS: Final = {"true": "true", "false": "false"}

# Plain words YAML 1.1 reads as booleans (besides true/false), refused in policies.
YAML11_BOOLEANS: Final = frozenset({"yes", "no", "on", "off", "y", "n"})


def is_numeral(text: str) -> bool:
    """A decimal numeral short enough to compare by value (`7`, `-7.50`, `1e3`, `.5`)."""
    return len(text) <= MAX_NUMERAL and text.isascii() and _NUMERAL.fullmatch(text) is not None


def canonical_text(text: str) -> str:
    """The canonical form of a text value (see the module docstring)."""
    if len(text) <= 5 and text.isascii():
        boolean = _BOOLEANS.get(text.lower())
        if boolean is not None:
            return boolean
    if not is_numeral(text):
        return text
    try:
        number = _EXACT.create_decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only numerals
        return text
    return _number_text(number)


def _number_text(number: Decimal) -> str:
    if number.is_zero():
        return "0"
    number = number.normalize(_EXACT)
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    text = "".join(map(str, digits))
    minus = "-" if sign else ""
    if 0 <= exponent <= _FULL_DIGITS:
        return minus + text + "0" * exponent
    if exponent < 0 and len(digits) + exponent > -_FULL_DIGITS:
        point = len(digits) + exponent
        if point > 0:
            return f"{minus}{text[:point]}.{text[point:]}"
        return f"{minus}0.{'0' * -point}{text}"
    adjusted = len(digits) - 1 + exponent
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    return f"{minus}{mantissa}e{adjusted:+d}"


def text_form(value: object) -> str | None:
    """The canonical text of an API metadata value. None for null, and for a value that
    has no canonical text: a list, an object, or an integer too long to write out."""
    if isinstance(value, str):
        return canonical_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -(10**_FULL_DIGITS) < value < 10**_FULL_DIGITS:
            return str(value)
        try:
            return canonical_text(str(value))
        except ValueError:  # more digits than Python writes out
            return None
    if isinstance(value, float):
        return canonical_text(repr(value))  # repr: the shortest text that reads back exactly
    return None


def is_unclear(value: object) -> bool:
    """A present, non-null value with no canonical text (a list, an object, ...)."""
    return value is not None and text_form(value) is None
