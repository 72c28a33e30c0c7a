"""What both transports ask of a pooled connection's socket: whether it is still fit
for a request. A poll object kept per connection makes the check one system call."""

from __future__ import annotations

import select
import socket


def is_socket_readable(sock: socket.socket | None, poller: select.poll | None = None) -> bool:
    """Whether a read would return at once: data waiting, or the peer closed (an idle
    pooled connection that is readable is dead). A socket without a descriptor counts
    as readable, as its next read ends. What httpcore asks through `is_readable`.
    `poller`, when given, already watches the socket for input (kept per connection)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # e.g. Windows
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    if poller is None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def input_poller(sock: socket.socket | None) -> select.poll | None:
    if sock is None or sock.fileno() < 0 or not hasattr(select, "poll"):
        return None
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return poller
