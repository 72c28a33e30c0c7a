"""Phone numbers as policies hold them: SHA-256 digests of a strict E.164 form.

Normalisation (the same for a number given to `retention hash-phone` and for a
call's `telephony_params.to` / `from`):

1. Blanks at either end are trimmed, and an optional `tel:` prefix (any case).
2. Spaces, `-`, `.`, `(` and `)` inside the number are removed.
3. What is left must be `+`, a first digit 1-9 (a country code), and 6 to 14 more
   ASCII digits: 7 to 15 digits in all, as E.164 allows.

Anything else is not a phone number here, and is never guessed at: a national
number without `+` (`(555) 123-4567`, whose country is unknown), the `00`
international prefix, letters (`1-800-FLOWERS`), extensions (`;ext=`, `x12`),
SIP URIs, or any other character. A call side that does not normalise matches no
digest, so an erasure never deletes a call by a guess.

The digest is `sha256:` and the lowercase hex SHA-256 of the normalised text in
ASCII, e.g. `+15551234567`. A digest is a pseudonym, not a secret: phone numbers
are few enough to be hashed exhaustively, so policy files with digests are still
to be kept as confidential as the requests they carry out.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

DIGEST_PREFIX: Final = "sha256:"
DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_SEPARATORS: Final = str.maketrans("", "", " -.()")
RULES: Final = "`+`, a country code and the number: 7 to 15 digits, spaces, - . ( ) allowed"


def normalise(text: str) -> str | None:
    """The E.164 form of a phone number (see the module docstring), or None."""
    number = text.strip()
    if number[:4].lower() == "tel:":
        number = number[4:]
    number = number.translate(_SEPARATORS)
    return number if number.isascii() and _E164.fullmatch(number) else None


def digest(e164: str) -> str:
    """`sha256:<hex>` of a normalised number."""
    return DIGEST_PREFIX + hashlib.sha256(e164.encode("ascii")).hexdigest()


def phone_digest(text: str | None) -> str | None:
    """The digest of a call's `to` or `from`, or None when absent or not a phone number."""
    if not text:
        return None
    e164 = normalise(text)
    return None if e164 is None else digest(e164)


def looks_like_number(text: str) -> bool:
    """Whether a policy value is plainly a phone number that was not hashed."""
    return normalise(text) is not None or sum(c.isdigit() for c in text) >= 7
