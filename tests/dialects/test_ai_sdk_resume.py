"""``GET /ai/{name}/stream`` driven by the ``ai`` package's own ``DefaultChatTransport`` (the
Node driver tests/js-dialects/ai-resume.mjs) against a real hub, on every backplane: a producer
publishes an answer's UI message chunks to ``chat/<id>``; resumes in the middle rebuild a prefix
of it; after the close the whole answer, byte for byte; 204 only for a chat with nothing to
replay; a private chat needs its grant.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.conftest import HubServer, MakeHub
from tests.support.ai_driver import JS, run_driver

SECRET = "a-subscribe-secret-of-at-least-32-bytes!"
PIECES = ["Der ", "Hub ", "sagt: ", "grüß ", "dich", ", 👋 ", "und ", "tschüss", "!\n", "Ende."]
TEXT = "".join(PIECES)

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        shutil.which("node") is None or not (JS / "node_modules" / "ai").is_dir(),
        reason="needs node and tests/js-dialects/node_modules (scripts/test runs npm ci there)",
    ),
]


def answer_chunks(message_id: str) -> list[dict[str, Any]]:
    return [
        {"type": "start", "messageId": message_id},
        {"type": "start-step"},
        {"type": "text-start", "id": "t-1"},
        *({"type": "text-delta", "id": "t-1", "delta": piece} for piece in PIECES),
        {"type": "text-end", "id": "t-1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


async def resume(hub: HubServer, chat: str, *extra: str) -> tuple[list[Any], dict[str, Any]]:
    """Run the driver against the hub (``--api <hub>/ai/chat``): its chunks and summary."""
    return await run_driver(f"{hub.url}/ai/chat", chat, *extra)


async def close(hub: HubServer, channel: str) -> None:
    async with hub.session.post(f"{hub.url}/channels/{channel}/close") as response:
        assert response.status == 200, await response.text()


async def test_resumes_mid_answer_rebuild_a_prefix_then_the_whole(
    hub: HubServer, backplane: str
) -> None:
    """Resumed three times while the answer streams (twice from history, once waiting for live
    chunks), each rebuilds the prefix published so far; after the close, the whole answer."""
    chat = uuid.uuid4().hex
    chunks = answer_chunks("m-" + chat)
    for chunk in chunks[:5]:
        await hub.publish(f"chat/{chat}", chunk)
    got, summary = await resume(hub, chat, "--abort-after", "4")
    assert got == chunks[:4] and summary["end"] == "aborted"
    assert summary["text"] == text_of(chunks[:4])
    # waits for live chunks: the first 5 from history, then 3 published while it reads
    reading = asyncio.create_task(resume(hub, chat, "--abort-after", "8"))
    await until_reading(hub, f"chat/{chat}")
    for chunk in chunks[5:9]:
        await hub.publish(f"chat/{chat}", chunk)
    got, summary = await reading
    assert got == chunks[:8] and summary["end"] == "aborted"
    assert summary["text"] == text_of(chunks[:8]) == "".join(PIECES[:5])
    for chunk in chunks[9:]:
        await hub.publish(f"chat/{chat}", chunk)
    await close(hub, f"chat/{chat}")
    got, summary = await resume(hub, chat)
    assert got == chunks and summary["end"] == "done" and summary["status"] == 200
    assert summary["text"].encode() == TEXT.encode()
    assert summary["message"]["id"] == "m-" + chat
    got, summary = await resume(hub, chat)  # a finished answer resumes whole, again and again
    assert summary["end"] == "done" and summary["text"] == TEXT


async def until_reading(hub: HubServer, channel: str) -> None:
    """Until the driver's stream is on the channel (the hub's own count of its subscribers)."""
    async with asyncio.timeout(20):
        while True:
            async with hub.session.get(f"{hub.url}/channels") as response:
                found = [c for c in await response.json() if c["name"] == channel]
            if found and found[0]["subscribers"] > 0:
                return
            await asyncio.sleep(0.05)


async def test_a_live_reader_gets_done_at_the_close(hub: HubServer, backplane: str) -> None:
    """A resume open while the producer finishes ends with the answer whole (``[DONE]`` and
    the end of the body), not with an error or an open stream."""
    chat = uuid.uuid4().hex
    chunks = answer_chunks("m-1")
    await hub.publish(f"chat/{chat}", chunks[0])
    reading = asyncio.create_task(resume(hub, chat))
    await until_reading(hub, f"chat/{chat}")
    for chunk in chunks[1:]:
        await hub.publish(f"chat/{chat}", chunk)
    await close(hub, f"chat/{chat}")
    got, summary = await reading
    assert got == chunks and summary["end"] == "done" and summary["text"] == TEXT


async def test_204_only_for_a_chat_with_nothing_to_replay(hub: HubServer, backplane: str) -> None:
    got, summary = await resume(hub, "never-" + uuid.uuid4().hex)
    assert got == [] and summary["end"] == "no-stream" and summary["status"] == 204
    chat = uuid.uuid4().hex
    await hub.publish(f"chat/{chat}", answer_chunks("m")[0])
    async with hub.session.delete(f"{hub.url}/channels/chat/{chat}") as response:
        assert response.status == 200
    got, summary = await resume(hub, chat)
    assert summary["end"] == "no-stream", "a deleted chat has nothing to resume"


async def test_the_stream_as_curl_sees_it(hub: HubServer, backplane: str) -> None:
    """The headers and frames: only chunks (a string event is no chunk: skipped), then
    ``data: [DONE]`` and the end; JSON errors for bad names."""
    await hub.publish("chat/raw", {"type": "start"})
    await hub.publish("chat/raw", "not a chunk")
    await hub.publish("chat/raw", "{not a chunk either")
    await hub.publish("chat/raw", {"type": "finish"}, event="named")
    await close(hub, "chat/raw")
    async with hub.session.get(f"{hub.url}/ai/chat/raw/stream") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["X-Accel-Buffering"] == "no"
        body = await response.read()
    assert body == b'data: {"type":"start"}\n\ndata: {"type":"finish"}\n\ndata: [DONE]\n\n'
    for path, status in [("/ai/bad%20name!/stream", 400), ("/ai/time/UTC/1/stream", 400)]:
        async with hub.session.get(f"{hub.url}{path}") as response:
            assert response.status == status
            assert "error" in await response.json()


@pytest.mark.any_backplane("grants are checked by the route; nothing stored")
async def test_a_private_chat_needs_its_grant(make_hub: MakeHub) -> None:
    hub = await make_hub(private_channels=["chat/*"], subscribe_jwt_secret=SECRET)
    chat = uuid.uuid4().hex
    for chunk in answer_chunks("m-1"):
        await hub.publish(f"chat/{chat}", chunk)
    await close(hub, f"chat/{chat}")
    got, summary = await resume(hub, chat)
    assert got == [] and summary["end"] == "error" and summary["status"] == 401
    claims = {"exp": int(time.time()) + 300, "channels": ["chat/someone-else"]}
    other = jwt.encode(claims, SECRET, algorithm="HS256")
    got, summary = await resume(hub, chat, "--header", f"Authorization: Bearer {other}")
    assert got == [] and summary["status"] == 403
    claims["channels"] = [f"chat/{chat}"]
    mine = jwt.encode(claims, SECRET, algorithm="HS256")
    got, summary = await resume(hub, chat, "--header", f"Authorization: Bearer {mine}")
    assert summary["end"] == "done" and summary["text"] == TEXT


@pytest.mark.any_backplane("capacity is counted in the process, checked before the backplane")
async def test_at_capacity_is_a_json_503_with_retry_after(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    """The transport does not retry by itself: a refusal is an error it throws, with a delay
    for the application (never 200 + retry:, which it would read as an empty answer). The
    operator is told which setting refused it, as for a native stream."""
    caplog.set_level(logging.WARNING, "hub.refusals")
    hub = await make_hub(max_subscribers=1)
    await hub.publish("chat/full", {"type": "start"})
    await hub.subscribe("/channels/news/events")
    async with hub.session.get(f"{hub.url}/ai/chat/full/stream") as response:
        assert response.status == 503 and int(response.headers["Retry-After"]) >= 1
        assert "max_subscribers" in (await response.json())["error"]
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.refusals"]
    assert lines == ["turned away a stream from 127.0.0.1 by max_subscribers (1 streams in all)"]
