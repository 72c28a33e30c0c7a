"""HTTP/1.1 responses read from bytes, as they come: the status line, the headers and
a body framed by Content-Length, chunks or the connection's end (RFC 9112).

`ResponseParser` is pure: bytes in, at most one complete response out, however the
bytes were split across reads. Anything malformed, or over a size limit, raises
httpx.RemoteProtocolError (what httpcore raises for the same), so the client's rules
on what may have taken effect see the same exception types whichever transport read
the answer. Nothing of a response's content goes into an error message.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final

import httpx

# Bounds on what one response may make us hold (each a clear RemoteProtocolError).
MAX_HEAD_BYTES: Final = 64 * 1024  # status line and headers together
MAX_HEADERS: Final = 128
MAX_CHUNK_LINE: Final = 1024  # a chunk's size line, extensions included
MAX_BODY_BYTES: Final = 64 * 1024 * 1024  # the body as sent, and once decompressed

_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
_LINE_END: Final = re.compile(rb"\r?\n")
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([\t \x21-\x7e\x80-\xff]*))?")
# Linear patterns only (no nested repeats): a hostile header never costs more than its length.
_HEADER_LINE: Final = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t \x21-\x7e\x80-\xff]*)")
_FOLDED_LINE: Final = re.compile(rb"[ \t]+([\t \x21-\x7e\x80-\xff]*)")
_CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")

# States of the parser.
_HEAD, _LENGTH, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


def protocol_error(what: str) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(what)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One response as it came: the body still as sent (see `decoded_body`)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool  # the connection may carry another request
    http_version: bytes = b"HTTP/1.1"


class ResponseParser:
    """Reads one response to a request. `feed` until it returns the response; `feed_eof`
    when the connection ends. Interim 1xx answers (but 101) are read past.
    `head_only`: the request was HEAD, so no body follows whatever the headers say."""

    __slots__ = (
        "_body",
        "_buffer",
        "_head_only",
        "_headers",
        "_keep_alive",
        "_max_body",
        "_reason",
        "_remaining",
        "_scanned",
        "_state",
        "_status",
        "_trailer_bytes",
        "_version",
    )

    def __init__(self, *, head_only: bool = False, max_body: int = MAX_BODY_BYTES) -> None:
        self._buffer = bytearray()
        self._state = _HEAD
        self._scanned = 0  # bytes of the head already searched for its end
        self._head_only = head_only
        self._max_body = max_body
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._version = b"HTTP/1.1"
        self._keep_alive = False
        self._remaining = 0  # of the body (Content-Length) or of the current chunk
        self._body = bytearray()
        self._trailer_bytes = 0

    @property
    def started(self) -> bool:
        """Whether any byte of a response arrived."""
        return bool(self._buffer) or self._state != _HEAD or self._scanned > 0

    def feed(self, data: bytes) -> RawResponse | None:
        """The response once its last byte is in; None while more is needed."""
        if self._state == _DONE:
            raise protocol_error("bytes after the end of the response")
        self._buffer += data
        return self._advance()

    def feed_eof(self) -> RawResponse:
        """The connection ended: the response it completes, or RemoteProtocolError."""
        if self._state == _UNTIL_CLOSE:
            self._take_body()
            self._state = _DONE
            self._keep_alive = False
            return self._response()
        if self._state == _HEAD and not self._buffer and self._scanned == 0:
            raise protocol_error("Server disconnected without sending a response.")
        raise protocol_error("peer closed connection without sending complete message body")

    # -- the steps -----------------------------------------------------------------

    def _advance(self) -> RawResponse | None:
        while True:
            state = self._state
            if state == _HEAD:
                if not self._read_head():
                    return None
            elif state == _LENGTH:
                if len(self._buffer) < self._remaining:
                    return None
                return self._finish(self._take(self._remaining))
            elif state == _CHUNK_LINE:
                if not self._read_chunk_line():
                    return None
            elif state == _CHUNK_DATA:
                if not self._buffer:
                    return None
                piece = self._take(min(self._remaining, len(self._buffer)))
                self._remaining -= len(piece)
                self._body += piece
                if self._remaining == 0:
                    self._state = _CHUNK_END
            elif state == _CHUNK_END:
                line = self._take_line(2)
                if line is None:
                    return None
                if line:
                    raise protocol_error("chunk data longer than its size")
                self._state = _CHUNK_LINE
            elif state == _TRAILERS:
                line = self._take_line(MAX_HEAD_BYTES)
                if line is None:
                    return None
                if not line:
                    return self._finish(bytes(self._body))
                self._trailer_bytes += len(line)
                if self._trailer_bytes > MAX_HEAD_BYTES:
                    raise protocol_error("trailers too long")
                if _HEADER_LINE.fullmatch(line) is None:
                    raise protocol_error("malformed trailer")
            elif state == _UNTIL_CLOSE:
                if len(self._buffer) > self._max_body:
                    raise protocol_error(f"response body over {self._max_body} bytes")
                return None
            else:  # _DONE: bytes beyond the response
                raise protocol_error("bytes after the end of the response")

    def _read_head(self) -> bool:
        """The status line and headers, once all in; then the body's framing."""
        found = _HEAD_END.search(self._buffer, max(0, self._scanned - 3))
        if found is None:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise protocol_error("response head too long")
            self._scanned = len(self._buffer)
            return False
        if found.start() > MAX_HEAD_BYTES:
            raise protocol_error("response head too long")
        head = bytes(self._buffer[: found.start()])
        del self._buffer[: found.end()]
        self._scanned = 0
        lines = _LINE_END.split(head)
        status_line = _STATUS_LINE.fullmatch(lines[0])
        if status_line is None:
            raise protocol_error("malformed status line")
        headers = _parse_headers(lines[1:])
        status = int(status_line[2])
        if 100 <= status < 200 and status != 101:
            return True  # interim answer: the final one follows
        self._version = b"HTTP/1.0" if status_line[1] == b"0" else b"HTTP/1.1"
        self._status, self._reason, self._headers = status, status_line[3] or b"", headers
        self._frame()
        return True

    def _frame(self) -> None:
        """How the body ends (RFC 9112 section 6.3), and whether the connection stays."""
        lengths: list[bytes] = []
        encodings: list[bytes] = []
        close = self._version == b"HTTP/1.0"
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length":
                lengths.extend(part.strip() for part in value.split(b","))
            elif lowered == b"transfer-encoding":
                encodings.extend(part.strip().lower() for part in value.split(b","))
            elif lowered == b"connection":
                tokens = {part.strip().lower() for part in value.split(b",")}
                close = close or b"close" in tokens
        self._keep_alive = not close
        if self._head_only or self._status in (204, 304) or self._status == 101:
            self._keep_alive = self._keep_alive and self._status != 101
            self._remaining = 0
            self._state = _LENGTH
            return
        if encodings:
            if encodings != [b"chunked"]:
                raise protocol_error("unsupported transfer encoding")
            self._state = _CHUNK_LINE
            return
        if lengths:
            if any(_DIGITS.fullmatch(v) is None for v in lengths) or len(set(lengths)) != 1:
                raise protocol_error("malformed Content-Length")
            self._remaining = int(lengths[0])
            if self._remaining > self._max_body:
                raise protocol_error(f"response body over {self._max_body} bytes")
            self._state = _LENGTH
            return
        self._keep_alive = False  # the body ends with the connection
        self._state = _UNTIL_CLOSE

    def _read_chunk_line(self) -> bool:
        line = self._take_line(MAX_CHUNK_LINE)
        if line is None:
            return False
        size = _CHUNK_SIZE.fullmatch(line)
        if size is None:
            raise protocol_error("malformed chunk size")
        self._remaining = int(size[1], 16)
        if len(self._body) + self._remaining > self._max_body:
            raise protocol_error(f"response body over {self._max_body} bytes")
        self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        return True

    def _take_line(self, limit: int) -> bytes | None:
        """One line without its end, or None until it is all in (at most `limit` bytes)."""
        found = _LINE_END.search(self._buffer)
        if found is None:
            if len(self._buffer) > limit + 1:
                raise protocol_error("line too long")
            return None
        if found.start() > limit:
            raise protocol_error("line too long")
        line = bytes(self._buffer[: found.start()])
        del self._buffer[: found.end()]
        return line

    def _take(self, count: int) -> bytes:
        piece = bytes(self._buffer[:count])
        del self._buffer[:count]
        return piece

    def _take_body(self) -> None:
        self._body = self._buffer
        self._buffer = bytearray()

    def _finish(self, body: bytes) -> RawResponse:
        self._body = bytearray(body)
        self._state = _DONE
        if self._buffer:  # bytes no request asked for: the answer stands, the connection not
            self._keep_alive = False
            self._buffer.clear()
        return self._response()

    def _response(self) -> RawResponse:
        return RawResponse(
            status=self._status,
            reason=self._reason,
            headers=self._headers,
            body=bytes(self._body),
            keep_alive=self._keep_alive,
            http_version=self._version,
        )


def _parse_headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(lines) > MAX_HEADERS:
        raise protocol_error("too many response headers")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        field = _HEADER_LINE.fullmatch(line)
        if field is not None:
            headers.append((field[1], field[2].strip(b" \t")))
            continue
        folded = _FOLDED_LINE.fullmatch(line)
        if folded is None or not headers:
            raise protocol_error("malformed response header")
        name, value = headers[-1]  # obsolete line folding: one value over two lines
        more = folded[1].rstrip(b" \t")
        headers[-1] = (name, value + b" " + more if value and more else value + more)
    return headers


# -- content codings -----------------------------------------------------------------


def decoded_body(
    headers: list[tuple[bytes, bytes]], body: bytes, *, limit: int = MAX_BODY_BYTES
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The body with its gzip/deflate content codings undone, at most `limit` bytes
    once decoded (httpx.DecodingError beyond, or when it does not decompress), and
    the headers without Content-Encoding and Content-Length. Unknown codings are left
    as they are (as httpx does). Without any coding: the same objects, untouched."""
    codings = [
        part.strip().lower()
        for name, value in headers
        if name.lower() == b"content-encoding"
        for part in value.split(b",")
    ]
    known = [c for c in codings if c in (b"gzip", b"x-gzip", b"deflate")]
    if not known or len(known) != len([c for c in codings if c not in (b"identity", b"")]):
        return headers, body
    for coding in reversed(known):
        body = _decompress(body, coding, limit)
    kept = [(n, v) for n, v in headers if n.lower() not in (b"content-encoding", b"content-length")]
    return kept, body


def _decompress(body: bytes, coding: bytes, limit: int) -> bytes:
    if coding == b"deflate":
        try:
            return _inflate(zlib.decompressobj(), body, limit)
        except zlib.error:  # raw deflate, without the zlib wrapper, as some servers send
            return _guarded(zlib.decompressobj(-zlib.MAX_WBITS), body, limit)
    return _guarded(zlib.decompressobj(zlib.MAX_WBITS | 16), body, limit)


def _guarded(inflater: zlib._Decompress, body: bytes, limit: int) -> bytes:
    try:
        return _inflate(inflater, body, limit)
    except zlib.error as err:
        raise httpx.DecodingError(f"response body does not decompress ({err})") from None


def _inflate(inflater: zlib._Decompress, body: bytes, limit: int) -> bytes:
    out = inflater.decompress(body, limit + 1)
    if len(out) <= limit and not inflater.unconsumed_tail:  # all input in: flush is small
        out += inflater.flush()
    if len(out) > limit or inflater.unconsumed_tail:
        raise httpx.DecodingError(f"response body over {limit} bytes once decompressed")
    return out
