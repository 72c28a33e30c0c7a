"""The transport's own socket check, which replaced httpcore's private helper."""

from __future__ import annotations

import socket

from retention.api.transport import is_socket_readable


def test_a_socket_is_readable_when_data_waits_or_the_peer_closed() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        assert not is_socket_readable(ours)  # an idle, live connection
        peer.sendall(b"x")
        assert is_socket_readable(ours)
        assert ours.recv(1) == b"x"
        assert not is_socket_readable(ours)
        peer.close()
        assert is_socket_readable(ours)  # the next read returns b"": the connection is dead


def test_a_missing_or_closed_socket_counts_as_readable() -> None:
    assert is_socket_readable(None)
    closed = socket.socket()
    closed.close()
    assert is_socket_readable(closed)
