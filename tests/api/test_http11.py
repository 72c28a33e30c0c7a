"""The HTTP/1.1 response parser under the lean transport: whatever the split of the
bytes across reads, the same response (or the same error); malformed or oversized
input raises RemoteProtocolError, never another exception, a hang or a response.
Expected responses are written here from RFC 9112's framing, not by the parser."""

from __future__ import annotations

import gzip
import itertools
import zlib
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.api.http11 import (
    MAX_HEAD_BYTES,
    RawResponse,
    ResponseParser,
    decoded_body,
)

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Framing headers are chosen by the test, not drawn at random.
FRAMING = {b"content-length", b"transfer-encoding", b"connection"}

names = st.text(TOKEN_CHARS, min_size=1, max_size=12).map(str.encode)
names = names.filter(lambda n: n.lower() not in FRAMING)
# Visible ASCII, inner spaces; no leading/trailing whitespace (a parser strips it).
values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=20
).map(lambda v: v.strip().encode())


@dataclass(frozen=True)
class Wire:
    """A response as bytes, and what a correct parser must make of it."""

    data: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    until_close: bool  # the body ends with the connection


@st.composite
def responses(draw: st.DrawFn) -> Wire:
    status = draw(st.sampled_from([200, 201, 202, 204, 304, 400, 404, 409, 429, 500, 503]))
    interim = draw(st.lists(st.sampled_from([100, 102, 103]), max_size=2))
    headers = draw(st.lists(st.tuples(names, values), max_size=6))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    closing = draw(st.booleans())
    no_body = status in (204, 304)
    if no_body:
        body = b""
    parts = [b"HTTP/1.1 %d Interim\r\n\r\n" % code for code in interim]
    parts.append(b"HTTP/1.1 %d Some Reason\r\n" % status)
    framing_headers: list[tuple[bytes, bytes]] = []
    if closing:
        framing_headers.append((b"Connection", b"close"))
    if framing == "length" and not no_body:
        framing_headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked" and not no_body:
        framing_headers.append((b"Transfer-Encoding", b"chunked"))
    all_headers = headers + framing_headers
    parts += [name + b": " + value + b"\r\n" for name, value in all_headers]
    parts.append(b"\r\n")
    if framing == "chunked" and not no_body:
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        edges = [0, *cuts, len(body)]
        for start, end in itertools.pairwise(edges):
            if end > start:
                parts.append(b"%x;ext=1\r\n" % (end - start) + body[start:end] + b"\r\n")
        parts.append(b"0\r\nTrailer-Field: x\r\n\r\n")
    elif not no_body:
        parts.append(body)
    until_close = framing == "close" and not no_body
    return Wire(
        data=b"".join(parts),
        status=status,
        headers=all_headers,
        body=body,
        keep_alive=not closing and not until_close,
        until_close=until_close,
    )


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def parse(pieces: list[bytes], *, eof: bool) -> RawResponse | None:
    parser = ResponseParser()
    for index, piece in enumerate(pieces):
        found = parser.feed(piece)
        if found is not None:
            assert index == len(pieces) - 1, "a response before its last byte"
            return found
    return parser.feed_eof() if eof else None


@given(responses(), st.lists(st.integers(0, 2000), max_size=30))
def test_any_split_of_a_response_parses_to_the_same_response(wire: Wire, cuts: list[int]) -> None:
    pieces = splits(wire.data, cuts)
    found = parse(pieces, eof=wire.until_close)
    assert found is not None
    assert found.status == wire.status
    assert found.headers == wire.headers
    assert found.body == wire.body
    assert found.keep_alive == wire.keep_alive
    if not wire.until_close:  # complete without the connection's end
        assert parse([wire.data], eof=False) == found


@given(responses(), st.integers(1, 10_000))
def test_a_response_cut_short_raises_when_the_connection_ends(wire: Wire, cut: int) -> None:
    data = wire.data[: len(wire.data) - 1 - cut % len(wire.data)]
    parser = ResponseParser()
    assert parser.feed(data) is None
    head_end = len(wire.data) - len(wire.body)
    if wire.until_close and len(data) >= head_end:  # the body so far is the whole body
        assert parser.feed_eof().body == data[head_end:]
        return
    with pytest.raises(httpx.RemoteProtocolError):
        parser.feed_eof()


def outcome(pieces: list[bytes]) -> tuple[int, list[tuple[bytes, bytes]], bytes] | str:
    """The first response the pieces complete (bytes after it are the connection's
    problem, not the answer's), the one the connection's end completes, or the error."""
    parser = ResponseParser()
    try:
        for piece in pieces:
            found = parser.feed(piece)
            if found is not None:
                break
        else:
            found = parser.feed_eof()
    except httpx.RemoteProtocolError:
        return "RemoteProtocolError"
    return found.status, found.headers, found.body


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=20))
def test_arbitrary_bytes_give_a_response_or_a_protocol_error_whatever_the_split(
    data: bytes, cuts: list[int]
) -> None:
    whole = outcome([data])
    assert outcome(splits(data, cuts)) == whole


@given(responses(), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_corrupted_bytes_never_raise_anything_but_a_protocol_error(
    wire: Wire, at: int, junk: bytes
) -> None:
    index = at % len(wire.data)
    data = wire.data[:index] + junk + wire.data[index + 1 :]
    whole = outcome([data])
    assert outcome(splits(data, [at, at + 1, at * 7])) == whole


MALFORMED = {
    "status line not HTTP": b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "status of two digits": b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "HTTP/2 status line": b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "header without colon": b"HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n",
    "space in header name": b"HTTP/1.1 200 OK\r\nContent Length: 0\r\n\r\n",
    "control byte in value": b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
    "fold before any header": b"HTTP/1.1 200 OK\r\n x\r\nContent-Length: 0\r\n\r\n",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "length not a number": b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
    "gzip transfer coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nab",
    "chunk size not hex": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk longer than said": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n"
    ),
    "malformed trailer": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n"
    ),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_responses_raise_a_protocol_error(data: bytes) -> None:
    def read_to_the_end() -> None:
        parser = ResponseParser()
        parser.feed(data)
        parser.feed_eof()

    with pytest.raises(httpx.RemoteProtocolError):
        read_to_the_end()


def test_a_head_over_the_limit_raises_before_it_ends() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(httpx.RemoteProtocolError, match="head too long"):
        parser.feed(b"X-Long: " + b"a" * MAX_HEAD_BYTES)


def test_bodies_over_the_limit_raise_whatever_their_framing() -> None:
    limit = 1000
    declared = b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n"
    with pytest.raises(httpx.RemoteProtocolError, match="over 1000 bytes"):
        ResponseParser(max_body=limit).feed(declared)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"a" * 1000
    parser = ResponseParser(max_body=limit)
    assert parser.feed(chunked + b"\r\n") is None
    with pytest.raises(httpx.RemoteProtocolError, match="over 1000 bytes"):
        parser.feed(b"1\r\n")
    parser = ResponseParser(max_body=limit)
    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 1000) is None  # until the end
    with pytest.raises(httpx.RemoteProtocolError, match="over 1000 bytes"):
        parser.feed(b"a")


def test_a_chunk_size_line_has_a_bound() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(httpx.RemoteProtocolError, match="line too long"):
        parser.feed(b"1;" + b"x" * 2000)


def test_no_bytes_at_all_is_a_disconnect_without_a_response() -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        ResponseParser().feed_eof()


def test_bytes_after_the_response_keep_the_answer_but_not_the_connection() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
    found = ResponseParser().feed(data)
    assert found is not None and found.body == b"ok" and not found.keep_alive


def test_head_and_http_1_0_framing() -> None:
    head = ResponseParser(head_only=True).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
    assert head is not None and head.body == b"" and head.keep_alive
    old = ResponseParser().feed(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert old is not None and old.body == b"ok" and not old.keep_alive
    folded = ResponseParser().feed(b"HTTP/1.1 200 OK\nX: a\n  b\nContent-Length: 0\n\n")
    assert folded is not None and folded.headers[0] == (b"X", b"a b")


# -- content codings -------------------------------------------------------------------


@given(st.binary(max_size=2000), st.sampled_from(["gzip", "deflate", "raw-deflate"]))
def test_compressed_bodies_come_out_as_sent(body: bytes, coding: str) -> None:
    if coding == "gzip":
        wire = gzip.compress(body)
    elif coding == "deflate":
        wire = zlib.compress(body)
    else:
        squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        wire = squeezer.compress(body) + squeezer.flush()
    name = b"gzip" if coding == "gzip" else b"deflate"
    headers = [(b"Content-Encoding", name), (b"Content-Length", b"1"), (b"X", b"y")]
    kept, decoded = decoded_body(headers, wire)
    assert decoded == body
    assert kept == [(b"X", b"y")]


def test_a_decompression_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 2_000_000)
    with pytest.raises(httpx.DecodingError, match="over 1000000 bytes"):
        decoded_body([(b"Content-Encoding", b"gzip")], bomb, limit=1_000_000)


def test_a_body_that_does_not_decompress_is_a_decoding_error() -> None:
    with pytest.raises(httpx.DecodingError):
        decoded_body([(b"Content-Encoding", b"gzip")], b"not gzip at all")


def test_unknown_or_no_codings_leave_the_body_alone() -> None:
    headers = [(b"Content-Encoding", b"br"), (b"Content-Length", b"3")]
    assert decoded_body(headers, b"abc") == (headers, b"abc")
    plain = [(b"Content-Length", b"3")]
    assert decoded_body(plain, b"abc") == (plain, b"abc")
