"""Telling, in bounded memory, that an agent's listing repeats itself.

Each page of a listing ends on a call whose id is the cursor of the next request.
A page ending where an earlier page ended is a page already listed: the listing has
gone round. Remembering every cursor would grow with the agent's history, so two
fixed-size checks are used instead:

- the last `window` cursors, exactly: a cycle of up to `window` pages is caught on
  its first repeated page, before any of that page's calls is yielded again;
- Brent's cycle detection over the whole sequence (one saved cursor, two counters):
  a cycle of any length is caught within a few rounds of it, after its calls may
  have been yielded again. Those repeats are calls the run has already seen.
"""

from __future__ import annotations

from collections import deque
from typing import Final

RECENT_CURSORS: Final = 64


class CursorCycle:
    """Fed each page's end cursor in order; says when one repeats. O(window) state."""

    __slots__ = ("_power", "_recent", "_steps", "_tortoise")

    def __init__(self, window: int = RECENT_CURSORS) -> None:
        if window < 0:
            raise ValueError("window must not be negative")
        self._recent: deque[str] = deque(maxlen=window)
        self._tortoise: str | None = None  # Brent's saved value
        self._power = 1  # steps until the saved value moves on (doubles each time)
        self._steps = 0

    def seen(self, cursor: str) -> bool:
        """Record the next cursor; True when it repeats one the checks remember."""
        if cursor == self._tortoise or cursor in self._recent:
            return True
        if self._recent.maxlen:
            self._recent.append(cursor)
        self._steps += 1
        if self._steps == self._power:
            self._tortoise = cursor
            self._power *= 2
            self._steps = 0
        return False
