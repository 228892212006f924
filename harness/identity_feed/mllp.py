"""MLLP client: how the harness pushes one HL7 v2 message to a SUT and reads its one reply.

A SUT under test may refuse the connection, never answer, answer forever, or answer
something that is not a frame. Each of these must end in a clear :class:`MllpError`
within the caller's timeout (one deadline covers connect, send and read), never in a
hung run; and what was sent and received, even partly, must be kept for the evidence
pack. :class:`MllpExchange` is that record; it converts to the simulators'
:class:`~harness.simulators.recording.Exchange`.

Framing (HL7 MLLP): ``0x0B`` + message + ``0x1C 0x0D``. The reply must start with
``0x0B`` (nothing before it), must not contain ``0x0B`` inside, and must end with
``0x1C 0x0D``; bytes after the end of the first frame are ignored.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harness.simulators.recording import Exchange, utcnow

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class MllpExchange:
    """One MLLP request/reply as the harness saw it (payloads without the framing bytes).

    Attributes:
        request: the message sent.
        response: the reply payload; on failure, the raw bytes received so far.
        peer: ``host:port`` of the SUT.
        started, ended: UTC timestamps.
        error: '' on success, else the reason of the :class:`MllpError`.
    """

    request: bytes
    response: bytes
    peer: str
    started: datetime
    ended: datetime
    error: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_exchange(self, *, action: str = "", simulator: str = "identity-feed") -> Exchange:
        """This exchange as a recorder entry (``protocol="mllp"``, ``direction="outbound"``)."""
        meta: dict[str, Any] = {"framing": "mllp", **self.meta}
        if self.error:
            meta["error"] = self.error
        return Exchange(
            simulator=simulator,
            protocol="mllp",
            action=action,
            direction="outbound",
            started=self.started,
            ended=self.ended,
            request=self.request,
            response=self.response,
            peer=self.peer,
            meta=meta,
        )


class MllpError(Exception):
    """The MLLP exchange failed; ``exchange`` holds what was sent and received so far."""

    def __init__(self, message: str, exchange: MllpExchange) -> None:
        super().__init__(message)
        self.exchange = exchange


class _FrameError(Exception):
    """The reply broke the framing rules (internal; becomes MllpError)."""


def frame(message: bytes) -> bytes:
    """``message`` wrapped in MLLP framing.

    Raises:
        ValueError: the message itself contains a framing byte (0x0B or 0x1C).
    """
    if START_BLOCK in message or END_BLOCK in message:
        raise ValueError("an MLLP payload cannot contain 0x0B or 0x1C")
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


def exchange_mllp(
    host: str,
    port: int,
    message: bytes,
    *,
    timeout_s: float = 5.0,
    max_response: int = 1_000_000,
) -> MllpExchange:
    """Send ``message`` framed, read one framed reply, and return the record of both.

    Args:
        host, port: the SUT's MLLP listener.
        message: the HL7 v2 message (unframed).
        timeout_s: one deadline for connecting, sending and reading the whole reply.
        max_response: the largest reply payload accepted, in bytes.

    Raises:
        MllpError: refused connection, timeout, peer closed early, oversized reply or
            bad framing; ``.exchange`` has the partial record.
        ValueError: ``message`` cannot be framed, or ``timeout_s``/``max_response`` are not positive.
    """
    if timeout_s <= 0 or max_response <= 0:
        raise ValueError("timeout_s and max_response must be positive")
    payload = frame(message)
    peer = f"{host}:{port}"
    started = utcnow()
    deadline = time.monotonic() + timeout_s
    received = bytearray()

    def failure(reason: str) -> MllpError:
        record = MllpExchange(message, bytes(received), peer, started, utcnow(), reason)
        return MllpError(reason, record)

    try:
        sock = socket.create_connection((host, port), timeout=_remaining(deadline))
    except ConnectionRefusedError:
        raise failure(f"connection refused by {peer}") from None
    except TimeoutError:
        raise failure(f"could not connect to {peer} within {timeout_s:g} s") from None
    except OSError as exc:
        raise failure(f"cannot connect to {peer}: {exc}") from None
    with sock:
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(payload)
            reply = _read_frame(sock, deadline, max_response, received)
        except TimeoutError:
            got = f" ({len(received)} bytes received)" if received else ""
            raise failure(f"no complete reply from {peer} within {timeout_s:g} s{got}") from None
        except _FrameError as exc:
            raise failure(f"bad reply from {peer}: {exc}") from None
        except OSError as exc:
            raise failure(f"connection to {peer} failed: {exc}") from None
    return MllpExchange(message, reply, peer, started, utcnow())


def send_mllp(
    host: str,
    port: int,
    message: bytes,
    *,
    timeout_s: float = 5.0,
    max_response: int = 1_000_000,
) -> bytes:
    """Send ``message`` and return the reply payload (see :func:`exchange_mllp` for errors)."""
    return exchange_mllp(host, port, message, timeout_s=timeout_s, max_response=max_response).response


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _read_frame(sock: socket.socket, deadline: float, max_response: int, received: bytearray) -> bytes:
    """Read until the end of the first frame; ``received`` accumulates the raw bytes."""
    while True:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(_CHUNK)
        if not chunk:
            if not received:
                raise _FrameError("the connection was closed without a reply")
            raise _FrameError(f"the connection was closed inside the frame ({len(received)} bytes received)")
        received += chunk
        if received[:1] != START_BLOCK:
            raise _FrameError(f"the reply does not start with 0x0B (first byte 0x{received[0]:02X})")
        end = received.find(END_BLOCK, 1)
        body_length = (end if end != -1 else len(received)) - 1
        if body_length > max_response:
            raise _FrameError(f"the reply is larger than {max_response} bytes")
        if START_BLOCK in received[1 : end if end != -1 else len(received)]:
            raise _FrameError("0x0B inside the frame")
        if end == -1 or len(received) < end + 2:
            continue
        if received[end + 1 : end + 2] != CARRIAGE_RETURN:
            raise _FrameError(f"0x1C is followed by 0x{received[end + 1]:02X}, not 0x0D")
        return bytes(received[1:end])
