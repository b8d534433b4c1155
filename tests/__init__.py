"""The test suite, by subject: ``tests/<subject>/test_*.py``, shared helpers in ``tests/support/``.

The fixtures (``hub``, ``make_hub``, ``backplane``, ...) live in tests/conftest.py and reach every
subject folder. The helpers used to sit beside the tests (``tests/helpers.py``, ...); tests written
before the move still import them by their old names, so those names are aliases of the new
modules (the same module object, not a copy). Write new imports against ``tests.support``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

__all__ = ["MOVED"]

#: old module name -> where it lives now
MOVED = {
    **{
        f"tests.{name}": f"tests.support.{name}"
        for name in (
            "backplane_rig",
            "front",
            "helpers",
            "nats_server",
            "netns_probe",
            "processes",
            "schemathesis_ndjson",
            "sse_client",
            "tcp_proxy",
        )
    },
    "tests.live_hub": "tests.support.hubs",  # running_hub, LiveHub
    # tests that other tests import things from
    "tests.test_browser": "tests.support.browser",  # fixtures and helpers of the page tests
    "tests.test_limits": "tests.limits.test_limits",
    "tests.test_private": "tests.private.test_private",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an import of an old name with the module at its new name."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran under its own name already; the import machinery has just written the
        alias's spec over its own, so put that back (reloading goes by it)."""
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.insert(0, _Alias())
