"""MLLP client: framing, one reply per message, and a clear MllpError (never a hang) on every failure."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime

import pytest

from harness.identity_feed.mllp import MllpError, exchange_mllp, frame, send_mllp
from harness.identity_feed.pam_fr import FeedPatient, build_ack_expectation, build_identity_message, parse_ack
from harness.simulators.recording import ExchangeRecorder
from harness.sut.model import Ins, PatientTraits

Behaviour = Callable[[socket.socket, bytes, threading.Event], None]

MESSAGE = build_identity_message(
    FeedPatient(
        ipp="000003",
        ipp_authority_name="CHU-X",
        ipp_authority_oid="1.2.3.4.5.6.7",
        traits=PatientTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28", "63220"),
        ins=Ins("279035121518989", "1.2.250.1.213.1.4.10"),
        identity_reliability="QUAL",
        ins_query_date=date(2024, 3, 1),
    ),
    "A28",
    control_id="MSG0001",
    timestamp=datetime(2024, 3, 6, 11, 11, 54),
)


class MllpTestServer:
    """A one-thread MLLP listener on 127.0.0.1 whose reply to each frame is a test's ``behaviour``."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received: list[bytes] = []
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, name="mllp-test-server", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                raw = bytearray()
                try:
                    while not raw.endswith(b"\x1c\r"):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        raw += chunk
                    self.received.append(bytes(raw))
                    self.behaviour(conn, bytes(raw[1:-2]), self.stop)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], MllpTestServer]]:
    servers: list[MllpTestServer] = []

    def start(behaviour: Behaviour) -> MllpTestServer:
        server = MllpTestServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def ack_for(message: bytes, code: str = "AA") -> bytes:
    control_id = build_ack_expectation(message).control_id.encode()
    return (
        b"MSH|^~\\&|SUT|SUT|H|H|20240306111155||ACK^A28^ACK|A1|P|2.5\rMSA|" + code.encode() + b"|" + control_id + b"\r"
    )


def acknowledge(conn: socket.socket, payload: bytes, stop: threading.Event) -> None:
    conn.sendall(frame(ack_for(payload)))


def never_answer(conn: socket.socket, payload: bytes, stop: threading.Event) -> None:
    stop.wait(10)


def expect_failure(port: int, fragment: str, **kwargs: float) -> MllpError:
    with pytest.raises(MllpError) as caught:
        exchange_mllp("127.0.0.1", port, MESSAGE, **kwargs)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    return caught.value


# --- success -------------------------------------------------------------------------------


def test_round_trip_with_ack(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    server = serve(acknowledge)
    record = exchange_mllp("127.0.0.1", server.port, MESSAGE, timeout_s=2.0)
    assert server.received == [b"\x0b" + MESSAGE + b"\x1c\r"]
    assert record.request == MESSAGE
    assert record.response == ack_for(MESSAGE)
    assert record.peer == f"127.0.0.1:{server.port}"
    assert record.started <= record.ended
    assert record.error == ""
    ack = parse_ack(record.response)
    assert build_ack_expectation(MESSAGE).check(ack) == []


def test_send_mllp_returns_the_payload(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    server = serve(lambda conn, payload, stop: conn.sendall(frame(payload)))  # echo
    assert send_mllp("127.0.0.1", server.port, MESSAGE) == MESSAGE


def test_reply_in_one_byte_pieces(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    def trickle(conn: socket.socket, payload: bytes, stop: threading.Event) -> None:
        for byte in frame(ack_for(payload)):
            conn.sendall(bytes([byte]))

    server = serve(trickle)
    assert parse_ack(send_mllp("127.0.0.1", server.port, MESSAGE, timeout_s=5.0)).code == "AA"


def test_bytes_after_the_frame_are_ignored(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    server = serve(lambda conn, payload, stop: conn.sendall(frame(b"MSA|AA") + b"trailing"))
    assert send_mllp("127.0.0.1", server.port, MESSAGE) == b"MSA|AA"


def test_exchange_goes_into_a_recorder(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    server = serve(acknowledge)
    record = exchange_mllp("127.0.0.1", server.port, MESSAGE)
    recorder = ExchangeRecorder()
    recorder.record(record.to_exchange(action="ADT^A28^ADT_A05"))
    [exchange] = recorder.all()
    assert (exchange.simulator, exchange.protocol, exchange.direction) == ("identity-feed", "mllp", "outbound")
    assert exchange.action == "ADT^A28^ADT_A05"
    assert exchange.request == MESSAGE and exchange.response == record.response
    data = exchange.to_dict()
    assert data["meta"] == {"framing": "mllp"}
    assert data["request"]["data"].startswith("MSH|")


# --- failures ------------------------------------------------------------------------------


def test_refused_connection() -> None:
    with socket.socket() as holder:  # bound, not listening: connections are refused
        holder.bind(("127.0.0.1", 0))
        port = int(holder.getsockname()[1])
        started = time.monotonic()
        error = expect_failure(port, "refused", timeout_s=2.0)
        assert time.monotonic() - started < 1.0
    assert error.exchange.request == MESSAGE
    assert error.exchange.response == b""
    assert error.exchange.to_exchange().meta["error"] == str(error)


def test_server_that_never_answers_times_out(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    server = serve(never_answer)
    started = time.monotonic()
    expect_failure(server.port, "within 0.3 s", timeout_s=0.3)
    assert 0.25 <= time.monotonic() - started < 1.5


def test_deadline_covers_the_whole_reply(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    def dribble(conn: socket.socket, payload: bytes, stop: threading.Event) -> None:
        conn.sendall(b"\x0bMSH|")
        while not stop.wait(0.05):
            conn.sendall(b"x")

    server = serve(dribble)
    started = time.monotonic()
    error = expect_failure(server.port, "bytes received", timeout_s=0.4)
    assert time.monotonic() - started < 1.5
    assert error.exchange.response.startswith(b"\x0bMSH|x")


def test_oversized_reply(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    server = serve(lambda conn, payload, stop: conn.sendall(frame(b"x" * 5000)))
    expect_failure(server.port, "larger than 1000 bytes", max_response=1000)


def test_oversized_reply_without_end(serve: Callable[[Behaviour], MllpTestServer]) -> None:
    def endless(conn: socket.socket, payload: bytes, stop: threading.Event) -> None:
        conn.sendall(b"\x0b")
        while not stop.is_set():
            try:
                conn.sendall(b"y" * 65536)
            except OSError:
                return

    server = serve(endless)
    expect_failure(server.port, "larger than 100000 bytes", max_response=100_000, timeout_s=3.0)


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (b"MSH|^~\\&|no framing\r", "does not start with 0x0B"),
        (b"\n\x0bMSA|AA\x1c\r", "does not start with 0x0B"),
        (b"\x0bMSA|AA\x1cX", "not 0x0D"),
        (b"\x0bMSA|\x0bAA\x1c\r", "0x0B inside the frame"),
        (b"", "closed without a reply"),
        (b"\x0bMSA|AA", "closed inside the frame"),
        (b"\x0bMSA|AA\x1c", "closed inside the frame"),
    ],
)
def test_bad_framing(serve: Callable[[Behaviour], MllpTestServer], reply: bytes, fragment: str) -> None:
    server = serve(lambda conn, payload, stop: conn.sendall(reply))
    error = expect_failure(server.port, fragment, timeout_s=2.0)
    assert error.exchange.response == reply


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        frame(b"MSH|\x0b")
    with pytest.raises(ValueError):
        exchange_mllp("127.0.0.1", 1, b"MSH|\x1c")
    with pytest.raises(ValueError):
        exchange_mllp("127.0.0.1", 1, MESSAGE, timeout_s=0)
    with pytest.raises(ValueError):
        exchange_mllp("127.0.0.1", 1, MESSAGE, max_response=0)
