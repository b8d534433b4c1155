"""Durable Streams at ``/v1/stream/{path}``: the published conformance suite
(``@durable-streams/server-conformance-tests``, pinned in tests/js-dialects) against the hub and
against the reference server (``@durable-streams/server``) in the same vitest run.

The target (issue 21) is relative, not absolute: every non-fork test that the reference passes in
this run passes on the hub. A test the reference fails here (it fails six: three sliding-TTL
tests, one CORS preflight, two SSE control pairings) or skips (the reserved subscription API) is
no target; forks are optional. Comparing against the reference in the same run, rather than
against a fixed list alone, keeps a slow or noisy machine from failing the hub for what would fail
any server. ``tests/js-dialects/durable-reference.json`` records what the reference passed when
the versions were pinned (``node tests/js-dialects/reference-run.mjs`` rewrites it); this test
checks that the pinned suite still has exactly those tests, so a changed package cannot shrink
the target silently.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.processes import dies_with_us

JS = Path(__file__).parents[1] / "js-dialects"
VITEST = JS / "node_modules" / ".bin" / "vitest"
RECORD = JS / "durable-reference.json"
FORK_PREFIX = "Fork - "
SEPARATOR = " > "
# The suite waits this long (+1 s) for a long-poll; the servers are told to answer sooner:
# the reference after 500 ms (tests/js-dialects/reference-server.mjs), the hub after
# HUB_LONG_POLL seconds (its durable_long_poll setting), as the upstream repository runs it.
LONG_POLL_MS = 20000
HUB_LONG_POLL = 0.5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.conformance,
    # one pytest-xdist worker runs the three backplanes: the reference runs once per worker
    # (_REFERENCE), and one run of it is enough
    pytest.mark.xdist_group("durable-conformance"),
    pytest.mark.skipif(
        shutil.which("node") is None or not VITEST.exists(),
        reason="needs node and tests/js-dialects/node_modules (scripts/test runs npm ci there)",
    ),
]


def suite_name(result: dict[str, Any]) -> str:
    """A vitest assertion result's name without the target's describe block around the suite:
    "Stream Closure > Close Operations > should ..." (the same for every target)."""
    return SEPARATOR.join([*result["ancestorTitles"][1:], result["title"]])


def by_target(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{target: {test name: vitest's result}} from vitest's JSON report."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for file in report["testResults"]:
        for result in file["assertionResults"]:
            target = result["ancestorTitles"][0]
            found.setdefault(target, {})[suite_name(result)] = result
    return found


def passed(results: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, result in results.items() if result["status"] == "passed"}


def why(result: dict[str, Any]) -> str:
    """The first line of a failed test's first failure message (or its status)."""
    messages = result.get("failureMessages") or [result["status"]]
    return str(messages[0]).strip().splitlines()[0][:300]


def is_fork(name: str) -> bool:
    return name.startswith(FORK_PREFIX)


async def start_reference() -> tuple[asyncio.subprocess.Process, str]:
    """The reference server, in memory, on 127.0.0.1 and a free port."""
    process = await asyncio.create_subprocess_exec(
        "node", "--no-warnings", str(JS / "reference-server.mjs"),
        cwd=JS,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=dies_with_us,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(30):
        line = (await process.stdout.readline()).decode()
    if not line.startswith("listening on http://127.0.0.1:"):
        await stop(process)
        raise AssertionError(f"the reference server did not start: {line!r}")
    return process, line.removeprefix("listening on ").strip()


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def run_suite(targets: dict[str, str], workdir: Path) -> dict[str, Any]:
    """One vitest run of the whole suite against every target; its JSON report."""
    report = workdir / "report.json"
    process = await asyncio.create_subprocess_exec(
        str(VITEST), "run", "--reporter=json", f"--outputFile={report}",
        cwd=JS,
        env={
            **_node_env(),
            "DURABLE_TARGETS": ",".join(f"{name}={url}" for name, url in targets.items()),
            "DURABLE_LONG_POLL_MS": str(LONG_POLL_MS),
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=dies_with_us,
    )  # fmt: skip
    try:
        output, _ = await process.communicate()
    finally:
        await stop(process)
    assert report.exists(), "vitest wrote no report:\n" + output.decode()[-4000:]
    return dict(json.loads(report.read_bytes()))


def _node_env() -> dict[str, str]:
    """Node's environment: enough to run, nothing of the caller's HUB_* or secrets."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "NODE_OPTIONS")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["CI"] = "1"  # vitest: no watch mode, no interactive output
    return env


async def serves_durable_streams(hub: HubServer) -> str | None:
    """Why the hub does not answer the protocol's create (``PUT /v1/stream/<path>`` -> 201 or
    200), or None when it does: a 404 (no route) or the 501 JSON error of a backplane without
    ``Streams``. The probe stream is deleted again."""
    url = f"{hub.url}/v1/stream/ssehub-probe-{uuid.uuid4().hex}"
    async with hub.session.put(url, headers={"Content-Type": "text/plain"}) as response:
        status = response.status
        body = await response.text()
    if status in (200, 201):
        async with hub.session.delete(url) as response:
            assert response.status == 204, await response.text()
        return None
    if status == 501:
        return str(json.loads(body)["error"])
    assert status == 404, (status, body)
    return "the hub does not serve Durable Streams yet (PUT /v1/stream/... -> 404)"


#: The reference server's results in this test session: {test name: vitest's result}.
_REFERENCE: dict[str, dict[str, Any]] = {}


@pytest.mark.timeout(900)
async def test_hub_passes_what_the_reference_passes(make_hub: MakeHub, backplane: str) -> None:
    # Per-address limits off: the suite opens hundreds of streams from 127.0.0.1 in seconds.
    hub = await make_hub(
        subscribe_rate=0,
        max_client_streams=0,
        max_client_channels=0,
        durable_long_poll=HUB_LONG_POLL,
    )
    if (reason := await serves_durable_streams(hub)) is not None:
        pytest.skip(reason)
    recorded = json.loads(RECORD.read_bytes())
    # The reference runs once per test session, beside the first backplane's hub in one vitest
    # run; the other backplanes' hubs run alone and are held to that same run's results (the
    # reference takes about as long as the hub: running it with each backplane cost CI ~40 s).
    with tempfile.TemporaryDirectory(prefix="ssehub-durable-") as workdir:
        if _REFERENCE:
            results = by_target(await run_suite({"hub": hub.url}, Path(workdir)))
            assert set(results) == {"hub"}, sorted(results)
            results["reference"] = _REFERENCE
        else:
            reference, url = await start_reference()
            try:
                report = await run_suite({"reference": url, "hub": hub.url}, Path(workdir))
            finally:
                await stop(reference)
            results = by_target(report)
            assert set(results) == {"reference", "hub"}, sorted(results)
            _REFERENCE.update(results["reference"])

    # the pinned suite is the one the record was made with: same tests, none lost or added
    recorded_names = set(recorded["passed"]) | set(recorded["not_passed"])
    assert set(results["reference"]) == recorded_names, (
        "the conformance suite's tests differ from tests/js-dialects/durable-reference.json: "
        f"new {sorted(set(results['reference']) - recorded_names)}, "
        f"gone {sorted(recorded_names - set(results['reference']))}"
    )
    target = {name for name in passed(results["reference"]) if not is_fork(name)}
    hub_passed = passed(results["hub"])
    missing = sorted(target - hub_passed)
    beyond = sorted(name for name in hub_passed - target if not is_fork(name))
    print(
        f"reference passed {len(target)} non-fork tests "
        f"(recorded: {len([n for n in recorded['passed'] if not is_fork(n)])}); "
        f"the hub passed {len(target & hub_passed)} of them, and {len(beyond)} more: {beyond}"
    )
    assert not missing, f"{len(missing)} tests pass on the reference but not on the hub:\n" + (
        "\n".join(f"{name}: {why(results['hub'][name])}" for name in missing)
    )
