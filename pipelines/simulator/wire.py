"""A small HTTP/1.1 server on asyncio, written for the simulator's two needs: speed (thousands of
keep-alive pulls a second from one process) and misbehaving on purpose at the socket level
(truncated bodies, connection resets, responses held back), which frameworks do not let you do.

It supports what API clients send: requests with Content-Length bodies, keep-alive, pipelining,
`Expect: 100-continue`. Chunked request bodies are refused (411). Long answers (the ground truth)
go out with chunked transfer encoding, made as the socket takes them (`send_stream`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import struct
from collections.abc import Callable, Iterator

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Payload Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}
_LINGER_ZERO = struct.pack("ii", 1, 0)
_STREAM_BURST = 16  # chunks written before other connections get the loop

log = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    keep_alive: bool

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


def response_bytes(status: int, body: bytes, content_type: str, keep_alive: bool) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n")
    return head.encode("latin-1") + body


class HttpConnection(asyncio.Protocol):
    """One client connection. Requests are handled one at a time, in order: while a response is
    held back (`send_later`), later requests on the same connection wait in the buffer."""

    def __init__(self, handler: Callable[[HttpConnection, Request], None], connections: set[HttpConnection]):
        self._handler = handler
        self._connections = connections
        self._buffer = bytearray()
        self._busy = False
        self._continued = False
        self._timer: asyncio.TimerHandle | None = None
        self._on_lost: Callable[[bool], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._paused = False
        self._stream: tuple[Iterator[bytes], bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_lost is not None:
            self._on_lost(False)
            self._on_lost = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._process()

    def _process(self) -> None:
        while not self._busy and not self.closed and not self.transport.is_closing():
            request = self._parse()
            if request is None:
                return
            self._handler(self, request)

    def _parse(self) -> Request | None:
        buf = self._buffer
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                self._refuse(431)
            return None
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._refuse(400)
            return None
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._refuse(400)
                return None
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._refuse(411)
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._refuse(400)
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self._refuse(413)
            return None
        total = end + 4 + length
        if len(buf) < total:
            if headers.get("expect", "").lower() == "100-continue" and not self._continued:
                self._continued = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        self._continued = False
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return Request(method, target, headers, body, keep_alive)

    def _refuse(self, status: int) -> None:
        self._buffer.clear()
        self.send(status, _REASONS[status].encode(), "text/plain", keep_alive=False)

    # -- answering ------------------------------------------------------------------------

    def send(self, status: int, body: bytes, content_type: str, *, keep_alive: bool) -> bool:
        """Write a whole response; False if the connection was already gone."""
        if self.closed or self.transport.is_closing():
            return False
        self.transport.write(response_bytes(status, body, content_type, keep_alive))
        if not keep_alive:
            self.transport.close()
        return True

    def send_stream(self, status: int, chunks: Iterator[bytes], content_type: str, *, keep_alive: bool) -> None:
        """A response with chunked transfer encoding: `chunks` is read only while the socket takes
        what is written (flow control), in bursts between which other connections are served."""
        if self.closed or self.transport.is_closing():
            return
        close = "" if keep_alive else "Connection: close\r\n"
        self.transport.write((f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nContent-Type: {content_type}"
                              f"\r\nTransfer-Encoding: chunked\r\n{close}\r\n").encode("latin-1"))
        self._busy = True
        self._stream = (chunks, keep_alive)
        self._pump()

    def _pump(self) -> None:
        if self._stream is None:
            return
        chunks, keep_alive = self._stream
        for _ in range(_STREAM_BURST):
            if self.closed:
                self._stream = None
                return
            if self._paused:
                return
            try:
                chunk = next(chunks)
            except StopIteration:
                self._stream = None
                self._busy = False
                self.transport.write(b"0\r\n\r\n")
                if keep_alive:
                    self._process()
                else:
                    self.transport.close()
                return
            except Exception:
                log.exception("simulator: a streamed answer failed; the connection is closed")
                self._stream = None
                self.transport.abort()
                return
            if chunk:
                self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        asyncio.get_running_loop().call_soon(self._pump)

    def send_truncated(self, status: int, body: bytes, content_type: str, cut: int) -> None:
        """The full Content-Length header, `cut` bytes of the body, then close."""
        data = response_bytes(status, body, content_type, True)
        if not self.closed:
            self.transport.write(data[: len(data) - len(body) + cut])
            self.transport.close()

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0) instead of FIN."""
        if self.closed:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self.transport.abort()

    def send_then_reset(self, status: int, body: bytes, content_type: str, cut: int, delay: float = 0.05) -> None:
        """Headers and `cut` bytes of the body, then, once they are on the wire, a reset."""
        if self.closed:
            return
        data = response_bytes(status, body, content_type, True)
        self.transport.write(data[: len(data) - len(body) + cut])
        self._busy = True
        self._timer = asyncio.get_running_loop().call_later(delay, self.reset)

    def send_later(self, delay: float, status: int, body: bytes, content_type: str, *, keep_alive: bool,
                   on_done: Callable[[bool], None]) -> None:
        """Hold the response for `delay` seconds; `on_done(True)` if it was then written,
        `on_done(False)` if the client gave up first."""
        self._busy = True
        self._on_lost = on_done

        def finish() -> None:
            self._timer = None
            self._on_lost = None
            self._busy = False
            on_done(self.send(status, body, content_type, keep_alive=keep_alive))
            self._process()

        self._timer = asyncio.get_running_loop().call_later(delay, finish)
