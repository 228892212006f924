"""Start and stop the reference system as a separate process.

The reference system must reach the simulators over sockets like any vendor software,
so it always runs in its own process. :func:`start_reference` launches it, waits (with a
timeout) for the one JSON line announcing where it listens, and returns a handle that
stops it cleanly: SIGTERM first, SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "reference.sqlite"
LOG_NAME = "reference.log"


class ReferenceStartError(RuntimeError):
    """The reference process did not announce itself (bad option, crash, or timeout)."""


@dataclass
class ReferenceProcess:
    """A running reference system: where it listens and how to stop it."""

    process: subprocess.Popen[bytes]
    url: str
    mllp: tuple[str, int]
    pid: int
    db_path: Path
    log_path: Path

    def stop(self, timeout_s: float = 5.0) -> int:
        """Terminate, then kill if needed; returns the exit code. Safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return int(self.process.returncode)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def __enter__(self) -> ReferenceProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def reference_command(
    db_path: Path,
    defects: Sequence[str] = (),
    profiles: Sequence[str] | None = None,
    call_timeout_s: float = 5.0,
    python: str = sys.executable,
) -> list[str]:
    """The command line that starts the reference system on loopback with free ports."""
    command = [python, "-m", "harness.reference", "--host", "127.0.0.1", "--port", "0", "--mllp-port", "0"]
    command += ["--db", str(db_path), "--call-timeout", f"{call_timeout_s:g}", "--exit-with-parent"]
    if defects:
        command += ["--defects", ",".join(defects)]
    if profiles is not None:
        command += ["--profiles", ",".join(profiles)]
    return command


def start_reference(
    db_dir: Path,
    defects: Sequence[str] = (),
    profiles: Sequence[str] | None = None,
    timeout_s: float = 20.0,
    call_timeout_s: float = 5.0,
) -> ReferenceProcess:
    """Start the reference system with its database and log in ``db_dir``; raises ReferenceStartError."""
    db_dir = Path(db_dir).resolve()
    db_dir.mkdir(parents=True, exist_ok=True)
    db_path, log_path = db_dir / DB_NAME, db_dir / LOG_NAME
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            reference_command(db_path, defects, profiles, call_timeout_s),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
        )
    assert process.stdout is not None
    line = _first_line(process.stdout, timeout_s)
    if line is None:
        _kill(process)
        raise ReferenceStartError(f"no announcement within {timeout_s:g} s; log tail:\n{_tail(log_path)}")
    if not line.strip():
        code = process.wait(5)
        raise ReferenceStartError(f"reference system exited with code {code}; log tail:\n{_tail(log_path)}")
    try:
        ready: dict[str, Any] = json.loads(line)
        mllp = (str(ready["mllp"]["host"]), int(ready["mllp"]["port"]))
        return ReferenceProcess(process, str(ready["url"]), mllp, int(ready["pid"]), db_path, log_path)
    except (ValueError, KeyError, TypeError) as exc:
        _kill(process)
        raise ReferenceStartError(f"unreadable announcement {line[:200]!r}: {exc}") from None


def _first_line(stream: IO[bytes], timeout_s: float) -> str | None:
    """The first line written on ``stream`` ('' at end of file), or None after ``timeout_s``."""
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout_s).decode("utf-8", "replace")
    except queue.Empty:
        return None


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
