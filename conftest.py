"""Root conftest: makes sure the harness's pytest plugin is active.

When the distribution is installed, pytest loads ``harness.plugin`` through its
``pytest11`` entry point; this file registers it only when running from a bare
checkout where the entry point is absent.
"""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["harness.plugin"]
