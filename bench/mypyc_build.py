"""An experiment, not the install: a copy of this checkout with the publish and fan-out path's
modules compiled to C extensions by mypyc, to count what compiling would save.

    .venv/bin/python -m bench.mypyc_build                        # -> /tmp/ssehub-mypyc
    .venv/bin/python -m bench.mypyc_build --dest DIR --modules hub/sse.py hub/events.py
    .venv/bin/python -m bench.instructions --tree /tmp/ssehub-mypyc   # compiled vs this tree

The hub is ``mypy --strict`` clean, so mypyc (it ships with mypy, the dev extra) compiles its
modules with a few tweaks; a Python call between compiled functions then costs a C call, not
~1,500-2,000 instructions. Nothing here touches this checkout: the tracked files are copied to
``--dest`` (its ``.venv`` a link to this one's), the source tweaks of ``TWEAKS`` are made there
(what mypyc cannot compile, or compiles to a different behaviour, each with its reason), and
the modules are compiled in place in the copy (``build_ext --inplace``): the ``.so`` files next
to their ``.py`` (an extension module is imported before a ``.py`` of the same name), the mypyc
runtime of the group in ``hub/compiled__mypyc*.so``. Run the tests or the benchmarks from the
copy (``PYTHONPATH=<dest>``), or compare it with ``bench.instructions --tree``; the figures are
in bench/README.md ("mypyc: an experiment").

Needs a C compiler and Python's headers (``gcc``, ``python3-dev`` or pyenv's own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python bench/mypyc_build.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import PYTHON, REPO

__all__ = ["MODULES", "main"]

#: The publish path (route, checks, encoding, store, receipt), the fan-out and the writes, and
#: the workers' link to the supervisor's engine. Compiled together, as one group: calls between
#: them are C calls. A class that an uncompiled module subclasses must be compiled with it
#: (``hub.stream.Stream`` subclasses ``hub.writer.Output``; ``MemoryBackplane`` its streams).
MODULES = (
    "hub/sse.py",
    "hub/events.py",
    "hub/writer.py",
    "hub/stream.py",
    "hub/channel.py",
    "hub/hub.py",
    "hub/api/publish.py",
    "hub/backplane/memory_log.py",
    "hub/backplane/memory_streams.py",
    "hub/backplane/memory.py",
    "hub/backplane/engine_wire.py",
    "hub/backplane/engine_link.py",
    "hub/backplane/engine_streams.py",
    "hub/backplane/engine_client.py",
    "hub/backplane/engine_server.py",
    # the rest of a publish's own calls (bench/walk.py: none of the hub's left interpreted)
    "hub/auth.py",
    "hub/clients.py",
    "hub/census.py",
    "hub/metrics.py",
    "hub/api/responses.py",
    "hub/config_fields.py",
)

#: (file, text, replacement): what mypyc cannot compile as written, each with its reason.
TWEAKS = (
    # A tuple subclass (falsy markers that are not ``()``) cannot be a native class: keep it an
    # ordinary Python class inside the compiled module (``mypy_extensions`` comes with mypy).
    (
        "hub/writer.py",
        "class _Marker(tuple):",
        "from mypy_extensions import mypyc_attr  # noqa: E402\n\n\n"
        "@mypyc_attr(native_class=False)\nclass _Marker(tuple):",
    ),
    # A fixed-length tuple type is a value in mypyc (unboxed, boxed again as a new ``()``): the
    # three markers lost their identity, ``pending is WRITTEN`` held for all three and no
    # heartbeat was ever sent (tests/core/test_core.py's heartbeat test caught it). Typed as
    # ``_Marker`` (a Python object) they keep it.
    *(
        ("hub/writer.py", f"{name}: tuple[()] = _Marker()", f"{name} = _Marker()")
        for name in ("QUIET", "WRITTEN", "AGED")
    ),
    # A compiled ``async def`` returns mypyc's own coroutine object, not a ``CoroutineType``: the
    # engine took a compiled memory backplane method's coroutine for its answer and failed to
    # encode it ("Type is not JSON serializable: channels_MemoryBackplane_gen"), so no worker
    # started (tests/backplane's [engine] and cluster tests). The ABC check knows both.
    (
        "hub/backplane/engine_server.py",
        "if type(result) is CoroutineType:",
        "if type(result) is CoroutineType or isinstance(result, Coroutine):",
    ),
    (
        "hub/backplane/engine_server.py",
        "from collections.abc import Callable, Sequence",
        "from collections.abc import Callable, Coroutine, Sequence",
    ),
    # ``del`` of a local in an ``async def``: mypyc keeps a coroutine's locals as attributes of
    # its environment object and cannot delete them. Without it the stream's coroutine keeps
    # its ``Ask`` for its whole life (memory per subscriber).
    ("hub/hub.py", "        del ask  #", "        # del ask  #"),
)

_SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="ssehub-mypyc-experiment",
    script_args=["build_ext", "--inplace"],
    ext_modules=mypycify(sys.argv[1:], group_name="hub.compiled", opt_level="3"),
)
"""


def copy_tree(dest: Path) -> None:
    """The tracked files of this checkout as they are on disk (uncommitted edits included)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    for name in listed.decode().split("\0"):
        source = REPO / name
        if name and source.is_file() and not source.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(Path(PYTHON).parent.parent.resolve())
    for modules in ("tests/js/node_modules", "tests/js-dialects/node_modules"):
        if (REPO / modules).exists():
            (dest / modules).symlink_to((REPO / modules).resolve())


def tweak(dest: Path) -> None:
    """All of them, whichever modules are compiled (each harmless to the interpreter; the
    engine's is needed as soon as the memory backplane is compiled, compiled or not itself)."""
    for name, text, replacement in TWEAKS:
        source = dest / name
        found = source.read_text()
        if text not in found:
            raise RuntimeError(f"{text!r} not in {name}: update bench/mypyc_build.py")
        source.write_text(found.replace(text, replacement, 1))


def compile_modules(dest: Path, modules: list[str]) -> None:
    (dest / "setup_mypyc.py").write_text(_SETUP)
    env = {**os.environ, "PYTHONPATH": str(dest)}
    subprocess.run([PYTHON, "setup_mypyc.py", *modules], cwd=dest, env=env, check=True)


def check_compiled(dest: Path, modules: list[str]) -> None:
    """Each module imports from its extension, not its ``.py``."""
    names = [m.removesuffix(".py").replace("/", ".") for m in modules]
    probe = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    path = importlib.import_module(name).__file__\n"
        "    print(('compiled ' if path.endswith('.so') else 'NOT compiled ') + name)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(dest)}
    subprocess.run([PYTHON, "-c", probe, *names], cwd=dest, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("/tmp/ssehub-mypyc"))
    parser.add_argument("--modules", nargs="+", default=list(MODULES))
    args = parser.parse_args()
    dest = args.dest.resolve()
    if dest == REPO or REPO in dest.parents:
        sys.exit("--dest must be outside this checkout")
    started = time.monotonic()
    copy_tree(dest)
    tweak(dest)
    compile_modules(dest, args.modules)
    check_compiled(dest, args.modules)
    print(f"compiled {len(args.modules)} modules in {dest} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
