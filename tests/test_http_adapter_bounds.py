"""The HTTP adapter reads answers by chunks: an endless answer or one trickling past its timeout is a SutError."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from harness.sut.base import SutError, SutTimeout
from harness.sut.http import HttpSut


def _serve(answer: bytes, trickle_s: float = 0.0) -> Iterator[int]:
    """A one-connection-at-a-time server sending ``answer`` (byte by byte every ``trickle_s`` if set)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                try:
                    if trickle_s:
                        for byte in answer:
                            if stop.is_set():
                                break
                            connection.sendall(bytes([byte]))
                            time.sleep(trickle_s)
                    else:
                        connection.sendall(answer)
                except OSError:
                    pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def huge_answer() -> Iterator[int]:
    body = b'{"padding": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    yield from _serve(head + body)


@pytest.fixture
def trickling_answer() -> Iterator[int]:
    body = b'{"file_name": "x.zip", "archive_base64": "' + b"A" * 400 + b'"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    yield from _serve(head + body, trickle_s=0.02)


def test_an_answer_above_the_limit_is_refused_unread(huge_answer: int) -> None:
    sut = HttpSut(f"http://127.0.0.1:{huge_answer}", timeout_s=5, max_answer_bytes=1024 * 1024)
    with pytest.raises(SutError, match=r"^GET /clock: the answer is larger than 1,048,576 bytes"):
        sut._call("GET", "/clock")


def test_an_answer_within_the_limit_is_read(huge_answer: int) -> None:
    sut = HttpSut(f"http://127.0.0.1:{huge_answer}", timeout_s=5)
    assert len(sut._call("GET", "/clock")["padding"]) == 3 * 1024 * 1024


def test_an_answer_trickling_past_its_timeout_is_a_timeout(trickling_answer: int) -> None:
    sut = HttpSut(f"http://127.0.0.1:{trickling_answer}", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(SutTimeout, match=r"the answer did not end within 0\.5 s"):
        sut._call("POST", "/portability/exports", {"scope": "massif"})
    assert time.monotonic() - started < 3
