"""The demo job runner (``POST /demo/jobs``) and the stand-alone ``examples/job_worker.py``.

A demo job must publish like any external service: through ``Hub.publish`` with the same checks,
ids and history; so these tests read its events the way a browser does, over a real stream.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.demo import DEMO_JOBS
from tests.conftest import HubServer, MakeHub
from tests.support.helpers import ID_RE, eventually, metrics
from tests.support.processes import run_to_end
from tests.support.sse_client import Message

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "examples" / "job_worker.py"
TOKEN = "test-token-0123456789abcdef"


async def start_job(hub: HubServer, status: int = 202, **kw: Any) -> dict[str, Any]:
    async with hub.session.post(f"{hub.url}/demo/jobs", **kw) as response:
        answer = await response.json()
        assert response.status == status, answer
        return dict(answer)


async def job_events(hub: HubServer, job_id: str) -> list[Message]:
    """Everything published to job/<id>, from the start of its history up to its last event."""
    stream = await hub.subscribe(f"/channels/job/{job_id}/events?from=start")
    found: list[Message] = []
    async with asyncio.timeout(10):
        while not found or found[-1].event not in ("done", "failed"):
            found.append(await stream.next(10))
    await stream.close()
    return found


def check_job(events: list[Message], job_id: str) -> dict[str, Any]:
    """The job's story is complete and in order; returns the done event's data."""
    assert [m.event for m in events[:1]] == ["started"]
    assert events[-1].event == "done"
    assert {m.event for m in events[1:-1]} == {"progress"}
    started = orjson.loads(events[0].data)
    assert started["job"] == job_id and started["stages"]
    progress = [orjson.loads(m.data) for m in events[1:-1]]
    percents = [p["pct"] for p in progress]
    assert percents == sorted(percents) and percents[0] > 0 and percents[-1] < 100
    stages = [p["stage_index"] for p in progress]
    assert stages == sorted(stages) and set(stages) == set(range(len(started["stages"])))
    positions = []
    for message in events:
        match = ID_RE.fullmatch(message.id)
        assert match and match["channel"] == f"job/{job_id}", message.id
        assert message.has_id, "job events are stored, so each carries its id"
        positions.append(int(match["position"]))
    assert positions == sorted(set(positions))
    done = orjson.loads(events[-1].data)
    assert done["pct"] == 100
    return dict(done)


@pytest.mark.any_backplane
async def test_demo_jobs_are_off_by_default(hub: HubServer) -> None:
    """Off in code (the shipped config.toml turns it on): no route, a JSON 404, and no job
    started (no job channel comes into being)."""
    answer = await start_job(hub, status=404)
    assert set(answer) == {"error"} and answer["error"].startswith("nothing at /demo/jobs"), answer
    await asyncio.sleep(0.2)  # a job would have published its "started" event by now
    async with hub.session.get(f"{hub.url}/channels") as response:
        channels = [c["name"] for c in await response.json()]
    assert not [name for name in channels if name.startswith("job/")], channels


async def test_job_publishes_progress_and_result_through_the_hub(
    make_hub: MakeHub, backplane: str
) -> None:
    """202 with the id, channel and page; then started, progress (stages, percent) and done
    with a result, all with ids from the backplane (memory or Redis), kept in history and
    counted as published events."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=0.5)
    published_before = (await metrics(hub))["hub_events_published_total"]
    answer = await start_job(hub)
    job_id = answer["id"]
    assert answer == {
        "id": job_id,
        "channel": f"job/{job_id}",
        "page": f"/jobs/{job_id}",
        "events": f"/channels/job/{job_id}/events?from=start",
    }
    events = await job_events(hub, job_id)
    done = check_job(events, job_id)
    result = done["result"]
    assert result["rows"] == 12_000
    assert set(result) >= {"revenue", "mean_order", "largest_order", "top_region", "by_region"}
    assert result["top_region"] in result["by_region"]
    assert result["revenue"] == pytest.approx(sum(result["by_region"].values()), abs=0.1)
    # through Hub.publish: counted like any publish, and in the channel list with its last id
    published = (await metrics(hub))["hub_events_published_total"] - published_before
    assert published == len(events)
    async with hub.session.get(f"{hub.url}/channels") as response:
        channels = {c["name"]: c for c in await response.json()}
    assert channels[f"job/{job_id}"]["last_id"] == events[-1].id
    # a visitor who comes after the end sees the same story, from history
    again = await job_events(hub, job_id)
    assert [(m.id, m.event, m.data) for m in again] == [(m.id, m.event, m.data) for m in events]


@pytest.mark.any_backplane
async def test_a_live_watcher_sees_the_job_as_it_runs(make_hub: MakeHub) -> None:
    """Events are spread over the job's duration, not sent at the end."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=1.0)
    job_id = (await start_job(hub))["id"]
    stream = await hub.subscribe(f"/channels/job/{job_id}/events?from=start")
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()
    while True:
        message = await stream.next(5)
        arrivals.append(loop.time())
        if message.event == "done":
            break
    assert arrivals[-1] - arrivals[0] > 0.6, "the job takes about demo_job_seconds"
    assert len(arrivals) == 22


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"", None, 202, None),
        (b"{}", "application/json", 202, None),
        (b" \n", "text/plain", 202, None),
        (
            b'{"rows": 5}',
            "application/json",
            400,
            "a demo job takes no options: unknown field 'rows'",
        ),
        (b"[]", "application/json", 400, "the body must be empty or {}"),
        (b"{", "application/json", 400, "the body is not valid JSON"),
        (b"go", "text/plain", 415, "Content-Type must be application/json, not 'text/plain'"),
    ],
    ids=["empty", "empty-object", "blank", "unknown-field", "array", "bad-json", "text"],
)
@pytest.mark.any_backplane
async def test_request_body(
    make_hub: MakeHub, body: bytes, content_type: str | None, status: int, message: str | None
) -> None:
    """No token and no options: the page's button posts nothing or {}."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=0.2)
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = await start_job(hub, status=status, data=body, headers=headers)
    if message is None:
        assert set(answer) == {"id", "channel", "page", "events"}
    else:
        assert answer["error"].startswith(message), answer


@pytest.mark.any_backplane
async def test_no_token_needed_even_when_publishing_needs_one(make_hub: MakeHub) -> None:
    """Visitors start demo jobs; the hub publishes them itself, not as an HTTP client."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=0.2, publish_tokens=[TOKEN])
    job_id = (await start_job(hub))["id"]
    check_job(await job_events(hub, job_id), job_id)


@pytest.mark.any_backplane
async def test_cap_on_concurrent_jobs(make_hub: MakeHub) -> None:
    """Beyond max_demo_jobs: 503, a JSON error naming the setting, and when to retry."""
    hub = await make_hub(demo_jobs=True, max_demo_jobs=2, demo_job_seconds=0.6)
    await start_job(hub)
    await start_job(hub)
    async with hub.session.post(f"{hub.url}/demo/jobs") as response:
        assert response.status == 503
        answer = await response.json()
        assert "2 demo jobs are running" in answer["error"]
        assert "max_demo_jobs" in answer["error"]
        assert response.headers["Retry-After"] == "1", "the first job ends within a second"
    await no_jobs_running(hub)
    await start_job(hub)  # room again once they ended


async def no_jobs_running(hub: HubServer) -> None:
    jobs = hub.app[DEMO_JOBS]

    async def ended() -> bool:
        return jobs.running == 0

    await eventually(ended, timeout=3, what="the demo jobs end")


@pytest.mark.any_backplane
async def test_shutdown_cancels_jobs_and_tells_watchers(make_hub: MakeHub) -> None:
    """Jobs are tasks held by the hub: cancelled and awaited at shutdown, and their watchers get
    a ``failed`` event before their stream ends, instead of a bar stuck half-way."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=30)
    job_id = (await start_job(hub))["id"]
    stream = await hub.subscribe(f"/channels/job/{job_id}/events?from=start")
    assert (await stream.next()).event == "started"
    jobs = hub.app[DEMO_JOBS]
    assert jobs.running == 1
    await hub.server.close()
    assert jobs.running == 0
    messages = await stream.until_end()
    assert messages[-1].event == "failed"
    assert orjson.loads(messages[-1].data) == {"error": "the hub shut down before the job ended"}
    assert all(task.get_name() != f"demo job {job_id}" for task in asyncio.all_tasks())


@pytest.mark.any_backplane
async def test_jobs_pass_the_same_checks_as_any_publish(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    """No shortcut into the fan-out: an event over max_event_bytes is refused to the demo too."""
    hub = await make_hub(
        demo_jobs=True, demo_job_seconds=0.2, max_event_bytes=64, max_body_bytes=1024
    )
    with caplog.at_level(logging.ERROR, logger="hub.demo"):
        job_id = (await start_job(hub))["id"]
        await no_jobs_running(hub)
    (record,) = [r for r in caplog.records if job_id in r.getMessage()]
    assert record.exc_info is not None
    assert "max_event_bytes" in str(record.exc_info[1])
    async with hub.session.get(f"{hub.url}/channels") as response:
        assert f"job/{job_id}" not in {c["name"] for c in await response.json()}


# -- examples/job_worker.py ------------------------------------------------------------------


async def run_worker(*args: str) -> tuple[int, str, str]:
    # A bare environment: the worker needs nothing but the standard library.
    return await run_to_end(sys.executable, str(WORKER), *args, env={"PATH": "/usr/bin:/bin"})


@pytest.mark.any_backplane
async def test_job_worker_publishes_a_job_with_a_token(make_hub: MakeHub) -> None:
    """The stand-alone worker publishes over HTTP with a bearer token; the job's page and any
    late viewer get the whole story from the hub's history."""
    hub = await make_hub(publish_tokens=[TOKEN])
    code, out, err = await run_worker(
        "--url", hub.url, "--token", TOKEN, "--job", "worker-test", "--seconds", "0.3"
    )
    assert code == 0, err
    assert f"watch it at {hub.url}/jobs/worker-test" in out
    done = check_job(await job_events(hub, "worker-test"), "worker-test")
    assert done["result"]["rows"] == 50_000
    assert f'"mean_reading": {done["result"]["mean_reading"]}' in out


@pytest.mark.any_backplane
async def test_job_worker_without_a_valid_token(make_hub: MakeHub) -> None:
    """A refused token is not retried (it cannot succeed later): exit 1 with the hub's reason."""
    hub = await make_hub(publish_tokens=[TOKEN])
    code, _, err = await run_worker("--url", hub.url, "--token", "x" * 20, "--seconds", "0.1")
    assert code == 1
    assert "403 from the hub" in err and "this token may not publish" in err
