"""Ids that come from the API, the audit log or the command line, checked before use.

An id goes into a URL path (`/agents/calls/{id}`) or query (`agent_id=`), so only
ids made of plain characters are ever used: letters, digits, `_`, `-`, `.` and `:`,
at most 128 of them, and never `.`/`..` or anything containing `..`. Anything else
(`/`, `?`, `#`, `%`, whitespace, control or non-ASCII characters) is refused
where it enters, whatever the encoding would have made of it.
"""

from __future__ import annotations

import re
from typing import Final

MAX_ID_LENGTH: Final = 128
_ID: Final = re.compile(r"[A-Za-z0-9_\-.:]{1,128}")


def is_valid_id(value: object) -> bool:
    """Whether `value` is an id this tool will put into a request."""
    return (
        isinstance(value, str)
        and _ID.fullmatch(value) is not None
        and ".." not in value
        and value != "."
    )


def id_problem(value: object) -> str | None:
    """Why `value` is not a usable id (naming no character of it), or None when it is."""
    if not isinstance(value, str):
        return "not text"
    if not value:
        return "empty"
    if len(value) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    if not is_valid_id(value):
        return "contains characters that are not allowed in an id (only A-Z a-z 0-9 _ - . :)"
    return None
