"""Walking an agent's listing page by page, and telling, in bounded memory, that it
repeats itself.

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
from datetime import datetime
from typing import Final

from retention.api.decode import Page
from retention.api.errors import PaginationError
from retention.api.ids import is_valid_id
from retention.api.models import Call, UnreadableCall

RECENT_CURSORS: Final = 64
LIST_ROUTE: Final = "/agents/calls"


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


class PageWalk:
    """The checks between the pages of one agent's listing, newest call first.

    `take(page)` returns the page's entries to yield (those not on the page just
    before: a list shifting under us), or raises PaginationError before any of them
    when the listing does not advance, repeats a page (see CursorCycle) or goes back
    to newer calls. `advance()`, after they are yielded, moves the cursor on: False
    when the listing has ended. O(page) state, however many pages.
    """

    __slots__ = ("_cycle", "_end", "_following", "_oldest", "_page_ids", "_previous_ids", "cursor")

    def __init__(self) -> None:
        self.cursor: str | None = None  # `starting_after` of the next request
        self._cycle = CursorCycle()
        self._previous_ids: frozenset[str] = frozenset()
        self._page_ids: frozenset[str] = frozenset()
        self._oldest: datetime | None = None  # the oldest start_time yielded so far
        self._following: str | None = None
        self._end = True

    def take(self, page: Page) -> list[Call | UnreadableCall]:
        """The new entries of `page`, checked; [] with the listing ended when it is over."""
        self._end = True
        fresh = self._fresh(page)
        if fresh is None:
            return []
        self._following = cursor_after(page.entries[-1].id, page.next_page)
        if self._following is not None and self._cycle.seen(self._following):
            raise pagination_error("the list of calls repeats a page already listed")
        self._check_order(fresh)
        self._end = page.next_page is None
        self._page_ids = frozenset(e.id for e in page.entries if e.id is not None)
        return fresh

    def _fresh(self, page: Page) -> list[Call | UnreadableCall] | None:
        """The entries not on the page before; None when the listing is over."""
        if not page.entries:
            return None
        fresh = [e for e in page.entries if e.id is None or e.id not in self._previous_ids]
        if self._advances(page, fresh):
            return fresh
        if page.next_page is None:
            return None  # nothing new, and the server says this is the end anyway
        raise pagination_error("the list of calls does not advance: the same cursor again")

    def _advances(self, page: Page, fresh: list[Call | UnreadableCall]) -> bool:
        """Something new, on a page that neither ends on the cursor sent nor names it
        as the next one."""
        last_id = page.entries[-1].id
        ends_on_cursor = last_id is not None and last_id == self.cursor
        echoes_cursor = self.cursor is not None and page.next_page == self.cursor
        return bool(fresh) and not ends_on_cursor and not echoes_cursor

    def _check_order(self, fresh: list[Call | UnreadableCall]) -> None:
        times = [e.start_time for e in fresh if isinstance(e, Call) and e.start_time]
        if not times:
            return  # null times are ignored
        if self._oldest is not None and max(times) > self._oldest:
            raise pagination_error("the list of calls went back to newer calls")
        self._oldest = min(times) if self._oldest is None else min(self._oldest, *times)

    def advance(self) -> bool:
        """After the page's entries: True with `cursor` set to ask for the next page."""
        if self._end:
            return False
        if self._following is None:
            raise pagination_error("the list of calls cannot go on: no usable cursor after a page")
        self.cursor = self._following
        self._previous_ids = self._page_ids
        return True


def cursor_after(last_id: str | None, next_page: str | None) -> str | None:
    """Where the next page starts: the page's last entry's id, else `next_page`, and
    only when usable as an id (api.ids); None when neither is."""
    for candidate in (last_id, next_page):
        if candidate is not None and is_valid_id(candidate):
            return candidate
    return None


def pagination_error(reason: str) -> PaginationError:
    return PaginationError(None, method="GET", route=LIST_ROUTE, reason=reason)
