"""The life cycle the simulators share: stop, context manager, running, and the URL they serve.

:class:`~harness.simulators.insi.InsiSimulator` and the DMP simulator each assemble their
own parts in ``start()``, but stopping the server, being used as a context manager, and
telling where the started server listens were written twice; :class:`ServedSimulator`
holds them once.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from harness.simulators.https import HttpsServer


class ServedSimulator:
    """Base of a simulator served by an :class:`~harness.simulators.https.HttpsServer`.

    A subclass sets ``name`` (``INSi``, ``DMP``: how errors name it), assigns ``_server``
    in :meth:`start`, and builds its ``url`` with :meth:`served_url`.
    """

    name = ""
    _server: HttpsServer[Any] | None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving and close open connections (safe to call twice)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    def served_url(self, scheme: str, path: str) -> str:
        """``scheme://host:port/path`` of the started server.

        Raises:
            RuntimeError: the simulator is not started (the port is chosen when it binds).
        """
        if self._server is None:
            raise RuntimeError(f"the {self.name} simulator is not started: call start() first")
        host, port = self._server.address
        return f"{scheme}://{host}:{port}{path}"
