"""The streamed-answer demo over HTTP: its events, its limit, and resuming in the middle."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from hub.demo_answer import ANSWER_TEXT, tokens
from tests.conftest import HubServer, MakeHub
from tests.private.test_private import refusal


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


async def test_an_answer_stream_ends_after_the_answer(make_hub: MakeHub, backplane: str) -> None:
    """Issue 20's newcomer item: the stream (as curl reads it) ends after ``end``, with
    ``event: close``, live and from the start, once the answer is done."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=0.3)
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        answer = await response.json()
    live = await hub.subscribe(answer["events"])
    *_, end, close = await live.until_end(timeout=10)
    assert (end.event, close.event) == ("end", "close")
    again = await hub.subscribe(f"/channels/{answer['channel']}/events?from=start")
    read = await again.until_end()
    assert [m.event for m in read[-2:]] == ["end", "close"] and len(read) == len(tokens()) + 2


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
    """Without the demo runner the route is not there: the JSON 404 of any unknown path."""
    hub = await make_hub()
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        assert response.status == 404
        answer = await response.json()
    assert set(answer) == {"error"} and answer["error"].startswith("nothing at /demo/answers")


async def _ticket(hub: HubServer, answer_id: str, status: int = 201) -> dict[str, Any]:
    async with hub.session.post(f"{hub.url}/demo/answers/{answer_id}/tickets") as response:
        assert response.status == status
        if status == 201:
            assert response.headers["Cache-Control"] == "no-store"
        return dict(await response.json())


async def test_a_private_answer_opens_with_a_ticket_for_its_id_only(
    make_hub: MakeHub, backplane: str
) -> None:
    """As shipped (answer/* private): the stream needs a ticket, the demo hands one out for the
    answer's id, it opens that answer once, and no other channel."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=0.5, private_channels=["answer/*"])
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        assert response.status == 202
        answer = await response.json()
    assert answer["private"] is True
    assert answer["tickets"] == f"/demo/answers/{answer['id']}/tickets"
    status, refused = await refusal(hub, answer["events"])
    assert status == 401 and "private" in refused["error"]

    ticket = (await _ticket(hub, answer["id"]))["ticket"]
    path = f"/events?channel={answer['channel']}&from=start&ticket={ticket}"
    stream = await hub.subscribe(path)
    got = await stream.take(len(tokens()) + 1, timeout=10)
    await stream.close()
    assert got[-1].event == "end"
    assert "".join(orjson.loads(m.data)["t"] for m in got[:-1]) == ANSWER_TEXT
    status, refused = await refusal(hub, path)
    assert status == 403 and "spent" in refused["error"], "a ticket opens one stream"

    other = (await _ticket(hub, answer["id"]))["ticket"]
    status, refused = await refusal(hub, f"/channels/answer/{'0' * 32}/events?ticket={other}")
    assert status == 403 and "does not cover" in refused["error"]


@pytest.mark.any_backplane
@pytest.mark.parametrize("bad", ["0" * 31, "0" * 33, "G" * 32, "%00" * 11, "..%2F" * 7])
async def test_a_ticket_for_a_malformed_answer_id_is_a_json_404(
    make_hub: MakeHub, bad: str
) -> None:
    hub = await make_hub(demo_jobs=True, private_channels=["answer/*"])
    refused = await _ticket(hub, bad, status=404)
    assert "32 hex digits" in refused["error"]


@pytest.mark.any_backplane
async def test_a_public_answer_says_so(make_hub: MakeHub) -> None:
    """Without private_channels the answer is public; its tickets are harmless (ignored)."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=0.3)
    async with hub.session.post(f"{hub.url}/demo/answers") as response:
        answer = await response.json()
    assert answer["private"] is False
    ticket = (await _ticket(hub, answer["id"]))["ticket"]
    stream = await hub.subscribe(f"/events?channel={answer['channel']}&from=start&ticket={ticket}")
    assert (await stream.take(1, timeout=5))[0].event == "token"
    await stream.close()


@pytest.mark.parametrize("ended", ["deleted", "closed"])
async def test_an_answer_whose_channel_is_deleted_stops_quietly(
    make_hub: MakeHub, backplane: str, caplog: pytest.LogCaptureFixture, ended: str
) -> None:
    """DELETE /channels/answer/<id> mid-answer (schemathesis's stateful run does it), or its
    close: the answer stops with one info line saying which, no traceback, and the demo takes
    new answers."""
    hub = await make_hub(demo_jobs=True, demo_job_seconds=2.0, max_demo_jobs=1)
    with caplog.at_level(logging.INFO):
        async with hub.session.post(f"{hub.url}/demo/answers") as response:
            answer = await response.json()
        stream = await hub.subscribe(answer["events"])
        await stream.take(3, timeout=5)
        url = f"{hub.url}/channels/{answer['channel']}"
        end = hub.session.delete(url) if ended == "deleted" else hub.session.post(f"{url}/close")
        async with end as response:
            assert response.status == 200, await response.text()
        for _ in range(100):  # the answer's task ends at its next token (2 s / 194 apart)
            async with hub.session.post(f"{hub.url}/demo/answers") as response:
                if response.status == 202:
                    break
            await asyncio.sleep(0.05)
        assert response.status == 202, "the deleted answer no longer counts against the limit"
        await stream.close()
    stopped = [r for r in caplog.records if r.name == "hub.demo" and answer["id"] in r.getMessage()]
    assert [r.levelno for r in stopped] == [logging.INFO], [r.getMessage() for r in stopped]
    assert stopped[0].getMessage().endswith(f"its channel was {ended}")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
