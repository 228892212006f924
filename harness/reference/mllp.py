"""The MLLP listener through which other domains push HL7 v2 identity messages.

Framing is ``0x0B message 0x1C 0x0D``; several messages may follow on one connection.
The listener protects the practice: bytes outside a frame close the connection, a
frame larger than :data:`MAX_FRAME` is answered with an AR and the connection closed,
and an idle connection is dropped after ``idle_timeout_s``.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from harness.reference.pamfr import build_ack

log = logging.getLogger("harness.reference")

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
MAX_FRAME = 1024 * 1024
_BLANKS = b"\r\n\t "


class MllpServer:
    """A threaded TCP server answering each framed message with what ``handle`` returns."""

    def __init__(self, host: str, port: int, handle: Callable[[bytes], bytes], idle_timeout_s: float = 30.0) -> None:
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve_connection(self.request)

        self._handle = handle
        self._idle_timeout_s = idle_timeout_s
        self._server = socketserver.ThreadingTCPServer((host, port), Handler, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # an idle sender must not delay shutdown
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mllp", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.settimeout(self._idle_timeout_s)
        buffer = bytearray()
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
                if not self._answer_complete_frames(sock, buffer):
                    return
        except (TimeoutError, OSError):
            return

    def _answer_complete_frames(self, sock: socket.socket, buffer: bytearray) -> bool:
        """Answer every complete frame in ``buffer``; False when the connection must close."""
        while True:
            while buffer and buffer[0] in _BLANKS:
                del buffer[0]
            if not buffer:
                return True
            if buffer[:1] != START_BLOCK:
                log.info("MLLP: bytes outside a frame, closing the connection")
                return False
            end = buffer.find(END_BLOCK, 1)
            if end < 0:
                if len(buffer) > MAX_FRAME:
                    log.info("MLLP: frame larger than %d bytes, refused", MAX_FRAME)
                    ack = build_ack("AR", "", "", datetime.now(UTC), error=("100", "message too large"))
                    sock.sendall(START_BLOCK + ack.encode("utf-8") + END_BLOCK)
                    _close_gently(sock)
                    return False
                return True
            payload = bytes(buffer[1:end])
            del buffer[: end + len(END_BLOCK)]
            sock.sendall(START_BLOCK + self._handle(payload) + END_BLOCK)


def _close_gently(sock: socket.socket, drain_s: float = 0.5, limit: int = 8 * MAX_FRAME) -> None:
    """Signal end of output, then swallow what the peer is still sending for a moment.

    Closing with unread input makes the kernel send a reset, which can destroy the
    AR the peer has not read yet; draining briefly lets it arrive.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(drain_s)
        swallowed = 0
        while swallowed < limit:
            data = sock.recv(65536)
            if not data:
                return
            swallowed += len(data)
    except OSError:
        return
