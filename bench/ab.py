"""Same-run A/B of two hub source trees: ``python -m bench.ab --base <git-rev or dir>``.

    python -m bench.ab --base main                    # main ÷ this checkout, every row, 3 runs
    python -m bench.ab --base HEAD~3 --quick          # smoke run: small sizes, 2 runs
    python -m bench.ab --base . --base-env SSEHUB_PUBLIC_API_ONLY=1 --scenarios idle
                                                      # this tree with and without a trick

The base is a directory holding a checkout, or a git revision of this repository, which is
extracted (``git archive``) into a temporary directory and removed afterwards; both trees run
with this checkout's venv. The rows are ``bench.run``'s (fan-out, bursts, 10k subscribers,
many channels, idle memory, publish) with its plan (``--quick`` too). One figure of one window
on a shared 2-core machine moves by tens of percent, so every scenario runs ``--repeat`` times
on a fresh hub of each tree, *interleaved* (base, head; then head, base; ...), and the table
gives each tree's median and run-to-run spread ((max - min) / median) and the median of the
per-run ratios head÷base with their range. A row is marked ``worse`` (or ``better``) only when
the median ratio is beyond 1 ± the larger of the two spreads: the issue's "no row worse by more
than the run-to-run spread". Exit status 1 if any row is ``worse`` and ``--check`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/ab.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadclient import install_uvloop, raise_nofile_limit
from bench.measure import log
from bench.run import CLIENT_CORE, Plan, Row, rows_for, run_target
from bench.servers import REPO, ServerSpec

__all__ = ["main"]

#: The issue's rows: fan-out, bursts, 10k subscribers ("big"), many channels, idle, publish.
SCENARIOS = ("fanout", "bursts", "big", "many", "idle", "publish")
#: Switches a hub reads that must not leak from this shell into both trees alike.
_CLEARED = ("SSEHUB_PUBLIC_API_ONLY",)


def checkout(base: str, into: Path) -> Path:
    """``base`` as a directory with ``hub/``: the git revision ``base`` of this repository
    extracted into ``into`` if it names one, else ``base`` itself as a directory."""
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not rev:
        path = Path(base).resolve()
        if not (path / "hub/__main__.py").exists():
            raise SystemExit(f"--base {base!r} is neither a git revision nor a checkout")
        return path
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _env(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--*-env wants KEY=VALUE, got {pair!r}")
        out.append((key, value))
    return tuple(out)


async def measure(
    specs: dict[str, ServerSpec], plan: Plan, scenarios: Sequence[str], repeat: int, work: Path
) -> dict[str, list[dict[str, Any]]]:
    """``{tree: [results of run 0, run 1, ...]}``, each scenario run on both trees in turn,
    the order swapped every run."""
    runs: dict[str, list[dict[str, Any]]] = {name: [{} for _ in range(repeat)] for name in specs}
    for n in range(repeat):
        order = list(specs) if n % 2 == 0 else list(reversed(specs))
        for scenario in scenarios:
            for name in order:
                log(f"run {n}: {name}")
                got = await run_target(specs[name], plan, [scenario], work / f"{n}-{name}")
                runs[name][n].update(got)
    return runs


def _spread(values: list[float]) -> float:
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else 0.0


def report(
    runs: dict[str, list[dict[str, Any]]], plan: Plan, scenarios: Sequence[str]
) -> tuple[str, int]:
    """One line per row: each tree's median and spread, the ratio head÷base, a verdict."""
    base, head = "base", "head"
    header = f"{'row':<58} {'base':>9} {'spread':>6} {'head':>9} {'spread':>6}  head÷base"
    lines, worse = [header, "-" * len(header)], 0
    for row in rows_for(plan):
        if row.scenario not in scenarios or "lost" in row.label:
            continue
        pairs = [
            (_value(row, b), _value(row, h)) for b, h in zip(runs[base], runs[head], strict=True)
        ]
        pairs = [(b, h) for b, h in pairs if b is not None and h is not None]
        if not pairs:
            continue
        bs, hs = [b for b, _ in pairs], [h for _, h in pairs]
        ratios = [h / b for b, h in pairs if b]
        spread = max(_spread(bs), _spread(hs))
        verdict = ""
        if ratios:
            ratio = statistics.median(ratios)
            bad = ratio - 1 if row.better == "lower" else 1 - ratio
            verdict = "worse" if bad > spread else "better" if -bad > spread else "same"
            worse += verdict == "worse"
            shown = f"{ratio:.3f} [{min(ratios):.3f}-{max(ratios):.3f}] {verdict}"
        else:
            shown = "—"
        lines.append(
            f"{row.label[:58]:<58} {statistics.median(bs):>9.2f} {_spread(bs):>6.1%} "
            f"{statistics.median(hs):>9.2f} {_spread(hs):>6.1%}  {shown}"
        )
    lost = [
        f"{tree} run {n} {name}: {r['loss']}"
        for tree, results in runs.items()
        for n, result in enumerate(results)
        for name, r in result.items()
        if isinstance(r, dict) and r.get("loss")
    ]
    errors = [
        f"{tree} run {n} {name}: {r['error']}"
        for tree, results in runs.items()
        for n, result in enumerate(results)
        for name, r in result.items()
        if isinstance(r, dict) and "error" in r
    ]
    lines += [f"lost events: {x}" for x in lost] + [f"error: {x}" for x in errors]
    lines.append(f"rows worse by more than the spread: {worse}")
    return "\n".join(lines), worse


def _value(row: Row, result: dict[str, Any]) -> float | None:
    scenario = result.get(row.scenario)
    if not isinstance(scenario, dict) or "error" in scenario:
        return None
    value = row.value(scenario)
    return float(value) if isinstance(value, int | float) else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="git revision of this repository, or a dir")
    p.add_argument("--head", default=str(REPO), help="a dir (this checkout)")
    p.add_argument("--base-env", action="append", default=[], help="KEY=VALUE for the base hub")
    p.add_argument("--head-env", action="append", default=[], help="KEY=VALUE for the head hub")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of bench.run's")
    p.add_argument("--repeat", type=int, help="runs of each scenario per tree (3; --quick 2)")
    p.add_argument("--quick", action="store_true", help="bench.run's smoke sizes")
    p.add_argument("--idle-sizes", help="e.g. 10000 (bench.run's)")
    p.add_argument("--json", help="write every run's figures here")
    p.add_argument("--check", action="store_true", help="exit 1 if a row is worse")
    args = p.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.idle_sizes:
        plan = replace(plan, idle_sizes=tuple(int(x) for x in args.idle_sizes.split(",")))
    repeat = args.repeat or (2 if args.quick else 3)
    scenarios = [s for s in args.scenarios.split(",") if s]
    for name in _CLEARED:
        os.environ.pop(name, None)
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {CLIENT_CORE})
    raise_nofile_limit()
    install_uvloop()
    work = Path(tempfile.mkdtemp(prefix="ssehub-ab-"))
    try:
        specs = {
            "base": ServerSpec(
                "hub-base", "hub", True, root=checkout(args.base, work / "base"),
                env=_env(args.base_env),
            ),
            "head": ServerSpec(
                "hub", "hub", False, root=Path(args.head).resolve(), env=_env(args.head_env)
            ),
        }  # fmt: skip
        log(f"base {specs['base'].root} {args.base_env}; head {specs['head'].root} {args.head_env}")
        runs = asyncio.run(measure(specs, plan, scenarios, repeat, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text, worse = report(runs, plan, scenarios)
    print(f"\nbase = {args.base} {' '.join(args.base_env)}; head = {args.head} "
          f"{' '.join(args.head_env)}; {repeat} interleaved runs each\n{text}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv, "runs": runs}, indent=1))
    return 1 if args.check and worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
