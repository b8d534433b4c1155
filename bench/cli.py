"""The command line both entry points share: common flags, the plan, the JSON file.

``bench.run`` and ``bench.scaleout`` each have a ``Plan`` dataclass of their own (sizes,
rates, durations; one flag per field). What they share is here: the flags every run has
(``--quick``, ``--check``, ``--json``, ``--markdown``, ``--from-json``, ``--workdir``,
``--warmup``, ``--duration``, ``--wait-quiet``, ``--retries``), turning flags into a plan,
reading a plan back from a result file, and that file's ``meta`` (date, machine,
versions, the command that made it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bench.measure import NOISY_MACHINE

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "floats",
    "ints",
    "load_results",
    "meta",
    "parser",
    "plan_from_args",
    "plan_from_saved",
    "run_in_workdir",
    "version",
    "write_results",
]

P = TypeVar("P", bound="DataclassInstance")
T = TypeVar("T")


class _Defaults(Protocol):
    warmup: float
    duration: float


def floats(text: str) -> tuple[float, ...]:
    """``"2,5,10"`` → ``(2.0, 5.0, 10.0)``."""
    return tuple(float(x) for x in text.split(",") if x)


def ints(text: str) -> tuple[int, ...]:
    """``"10000,15000"`` → ``(10000, 15000)``."""
    return tuple(int(x) for x in text.split(",") if x)


def parser(
    prog: str, doc: str | None, defaults: _Defaults, *, quick: str, check: str, unit: str
) -> argparse.ArgumentParser:
    """A parser with the flags every run has; ``quick`` and ``check`` are their help,
    ``unit`` what a measured window is called ("scenario", "step")."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument("--check", action="store_true", help=check)
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    p.add_argument("--from-json", type=Path, help="only re-print the tables of a JSON run")
    p.add_argument(
        "--workdir", type=Path, help="keep server configs and logs here (default: a temp dir)"
    )
    p.add_argument("--warmup", type=float, help=f"seconds ({defaults.warmup:g})")
    p.add_argument("--duration", type=float, help=f"measured seconds ({defaults.duration:g})")
    p.add_argument(
        "--wait-quiet",
        type=float,
        help=f"before each {unit} wait up to this many seconds for other processes "
        f"to go under {NOISY_MACHINE:.0%} of a core (0: don't wait)".replace("%", "%%"),
    )
    p.add_argument("--retries", type=int, help=f"re-run a noisy {unit} up to N times (0)")
    return p


def plan_from_args(base: P, args: argparse.Namespace) -> P:
    """``base`` with every field whose flag was given replaced (flag ``--a-b`` sets ``a_b``)."""
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(base)
        if getattr(args, f.name, None) is not None
    }
    return replace(base, **overrides)


def plan_from_saved(cls: Callable[..., P], saved: dict[str, Any]) -> P:
    """The plan of a result file (JSON lists back to the plan's tuples)."""
    plan = saved["plan"]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in plan.items()})


def load_results(path: Path) -> dict[str, Any]:
    """A result file as written by ``write_results``: ``meta``, ``plan``, ``results``."""
    saved: dict[str, Any] = json.loads(path.read_text())
    return saved


def write_results(path: Path, meta: dict[str, Any], plan: DataclassInstance, results: Any) -> None:
    """Write ``{"meta", "plan", "results"}``; ``--from-json`` re-prints the tables from it."""
    path.write_text(json.dumps({"meta": meta, "plan": asdict(plan), "results": results}, indent=1))


def meta(
    prog: str, argv: Sequence[str] | None, started: float, uvloop: bool, **extra: Any
) -> dict[str, Any]:
    """Where and when a run ran, with what, for how long, and the command that ran it
    (``argv``: the arguments after ``prog``, None for ``sys.argv``'s)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "uvloop_client": uvloop,
        **extra,
        "command": " ".join([prog, shlex.join(args)]).strip(),
    }


def version(cmd: list[str]) -> str | None:
    """First line a ``--version``-like command prints, or None if it can't run."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.returncode == 0 else None


def run_in_workdir(
    workdir: Path | None, prefix: str, body: Callable[[Path], Coroutine[Any, Any, T]]
) -> T:
    """``asyncio.run(body(dir))`` in ``workdir``, or in a temp dir removed afterwards."""
    if workdir is not None:
        return asyncio.run(body(workdir.resolve()))
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return asyncio.run(body(Path(tmp)))
