"""The streamed-answer demo over HTTP: its events, its limit, and resuming in the middle."""

from __future__ import annotations

import orjson
import pytest

from hub.demo_answer import ANSWER_TEXT, tokens
from tests.conftest import MakeHub


async def test_answer_resumes_mid_way_with_last_event_id(make_hub: MakeHub, backplane: str) -> None:
    """Read part of an answer, drop the connection, resume with the last id: the rest, once."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=1.0)
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        assert response.status == 202
        answer = await response.json()
    first = await hub.subscribe(answer["events"])
    part = await first.take(20)
    await first.close()
    rest = await hub.subscribe(
        f"/channels/{answer['channel']}/events", {"Last-Event-ID": part[-1].id}
    )
    more = await rest.take(len(tokens()) - 20 + 1, timeout=10)
    assert more[-1].event == "end"
    pieces = [orjson.loads(m.data) for m in part + more[:-1]]
    assert [p["i"] for p in pieces] == list(range(len(tokens())))
    assert "".join(p["t"] for p in pieces) == ANSWER_TEXT


@pytest.mark.any_backplane
async def test_answers_are_limited_by_max_demo_jobs(make_hub: MakeHub) -> None:
    hub = await make_hub(demo_jobs=True, max_demo_jobs=1, demo_job_seconds=30)
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        assert response.status == 202
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert "max_demo_jobs" in (await response.json())["error"]


@pytest.mark.any_backplane
async def test_no_answers_without_demo_jobs(make_hub: MakeHub) -> None:
    hub = await make_hub()
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        assert response.status in (404, 405)
