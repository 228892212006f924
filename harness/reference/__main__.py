"""Run Cabinet Témoin: ``python -m harness.reference --db PATH [options]``.

Starts the control API (HTTP) and the MLLP listener, prints exactly one JSON line on
stdout (``{"url": ..., "mllp": {"host", "port"}, "pid": ...}``) once both listen, logs
to stderr, and serves until SIGTERM or SIGINT. The active defects are named only in
that log, never in the API, so a scenario cannot read them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from werkzeug.serving import make_server

from harness.reference import DEFAULT_PROFILES, SOFTWARE, __version__
from harness.reference.api import ControlApi
from harness.reference.defects import UnknownDefect, describe_defects, parse_defects
from harness.reference.feeds import FeedIntegrator
from harness.reference.identity import IdentityService
from harness.reference.mllp import MllpServer
from harness.reference.settings import Clock, EndpointSettings, installation_id
from harness.reference.soap import LpsIdentity
from harness.reference.store import Store

IDAM = "TEMOIN-0001"
"""The authorisation number the reference software puts in ContexteLPS/LPS/IDAM (a test value)."""

log = logging.getLogger("harness.reference")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness.reference",
        description=f"{SOFTWARE} {__version__}: the harness's reference GP practice system.",
        epilog="defects (comma-separated with --defects):\n" + describe_defects(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="control API port (default 0: any free port)")
    parser.add_argument("--db", required=True, type=Path, help="SQLite database file (created if missing)")
    parser.add_argument("--defects", default="", help="comma-separated defects to switch on")
    parser.add_argument(
        "--profiles", default=None, help="comma-separated ANS profiles to claim (default: the reference set)"
    )
    parser.add_argument("--mllp-port", type=int, default=0, help="MLLP port (default 0: any free port)")
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=5.0,
        help="timeout of each call to a national service (INSi, DMP, PSC...) in seconds (default 5)",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when the process that started this one dies (the harness's launcher sets it)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        defects = parse_defects(args.defects)
    except UnknownDefect as exc:
        parser.error(str(exc))
    if args.call_timeout <= 0:
        parser.error("--call-timeout must be positive")
    profiles = DEFAULT_PROFILES if args.profiles is None else _profiles(args.profiles)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    db_path: Path = args.db.resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db_path)
    clock = Clock(store)
    lps = LpsIdentity(name=SOFTWARE, version=__version__, instance=installation_id(store), idam=IDAM)
    service = IdentityService(
        store, clock, EndpointSettings(store, db_path.parent), lps, profiles, defects, args.call_timeout
    )
    feeds = FeedIntegrator(service)
    mllp = MllpServer(args.host, args.mllp_port, feeds.receive_bytes)
    app = ControlApi(service, feeds, mllp.address)
    http = make_server(args.host, args.port, app, threaded=True)

    stop = threading.Event()
    parent = os.getppid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    mllp.start()
    http_thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="http", daemon=True)
    http_thread.start()

    host, port = mllp.address
    ready = {"url": f"http://{args.host}:{http.server_port}", "mllp": {"host": host, "port": port}, "pid": os.getpid()}
    app.base_url = str(ready["url"])
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    sys.stdout = sys.stderr  # nothing else may reach the launcher's pipe
    log.info(
        "%s %s ready at %s, MLLP %s:%d, db %s, profiles [%s], defects [%s]",
        SOFTWARE,
        __version__,
        ready["url"],
        host,
        port,
        db_path,
        ", ".join(profiles),
        ", ".join(sorted(defects)) or "none",
    )
    while not stop.wait(0.05):
        if args.exit_with_parent and os.getppid() != parent:
            log.info("the launching process is gone")
            break
    log.info("stopping")
    # A second SIGTERM (a launcher that terminates, then terminates again while waiting) must not
    # kill the process half-way through shutdown or interpreter exit: the launcher kills after its timeout.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    http.shutdown()
    mllp.stop()
    store.close()
    return 0


def _profiles(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


if __name__ == "__main__":
    sys.exit(main())
