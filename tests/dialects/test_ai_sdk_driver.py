"""The AI SDK driver (tests/js-dialects/ai-resume.mjs) against a throwaway fake of a resumable
chat endpoint, to prove the driver before it is pointed at the hub's ``GET /ai/{name}/stream``.

The fake serves what the ``ai`` package's ``DefaultChatTransport.reconnectToStream`` reads
(node_modules/ai/dist/index.js, ``HttpChatTransport.reconnectToStream``, and
@ai-sdk/provider-utils ``parseJsonEventStream``): ``GET {api}/{chatId}/stream``; 204 means no
stream to resume; any other 2xx body is SSE whose every event's ``data`` is one UI message chunk
(JSON, checked against ``uiMessageChunkSchema``) until ``data: [DONE]``, which is skipped; the
stream ends when the body does. The ``event:`` field is ignored, so any frame the server sends
must carry a chunk; comments, ``id:`` and ``retry:`` lines are harmless (the fake sends them, as
the hub will). The header ``x-vercel-ai-ui-message-stream: v1`` is sent as the SDK's own server
helpers do, though the transport does not check it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.ai_driver import DRIVER, JS, run_driver
from tests.support.processes import dies_with_us

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
}
TOKEN = "Bearer chat-reader"
ANSWER: list[dict[str, Any]] = [
    {"type": "start", "messageId": "m-1"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t-1"},
    *(
        {"type": "text-delta", "id": "t-1", "delta": piece}
        for piece in ["Hel", "lo, ", "wörld", " 👋"]
    ),
    {"type": "text-end", "id": "t-1"},
    {"type": "finish-step"},
    {"type": "finish", "finishReason": "stop"},
]
TEXT = "Hello, wörld 👋"

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        shutil.which("node") is None or not (JS / "node_modules" / "ai").is_dir(),
        reason="needs node and tests/js-dialects/node_modules (scripts/test runs npm ci there)",
    ),
]


def frame(chunk: dict[str, Any] | str, position: int | None = None) -> bytes:
    """One SSE event as the hub would write it: an ``id:`` line, then ``data:``."""
    data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
    head = f"id: {position}\n" if position is not None else ""
    return f"{head}data: {data}\n\n".encode()


class FakeChats:
    """``GET /api/chat/{chat}/stream``: "finished" is a whole answer and ``[DONE]``; "open" is
    the answer without its end, then comments until the client goes; "bad" sends a frame whose
    data is no chunk; "private" wants ``Authorization``; anything else is 204."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()  # "open": the client went away

    async def stream(self, request: web.Request) -> web.StreamResponse:
        chat = request.match_info["chat"]
        if chat == "private" and request.headers.get("Authorization") != TOKEN:
            return web.json_response({"error": "no grant"}, status=401)
        if chat not in ("finished", "open", "bad", "private"):
            return web.Response(status=204)
        response = web.StreamResponse(headers=HEADERS)
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n: a comment, as a heartbeat\n\n")
        if chat == "bad":
            await response.write(frame(ANSWER[0], 1) + b"event: close\ndata: {}\n\n")
            return response
        for position, chunk in enumerate(ANSWER, 1):
            await response.write(frame(chunk, position))
        if chat == "open":
            try:
                while True:  # until the client aborts: a write fails or (test servers
                    # cancel handlers) the handler is cancelled
                    await response.write(b": still here\n\n")
                    await asyncio.sleep(0.02)
            except ConnectionError:
                self.gone.set()
                return response
            except asyncio.CancelledError:
                self.gone.set()
                raise
        await response.write(frame("[DONE]"))
        await response.write_eof()
        return response


@pytest.fixture
async def chats(aiohttp_server: Any) -> tuple[FakeChats, TestServer]:
    fake = FakeChats()
    app = web.Application()
    app.router.add_get("/api/chat/{chat}/stream", fake.stream)
    server = await aiohttp_server(app, host="127.0.0.1")
    return fake, server


async def resume(server: TestServer, chat: str, *extra: str) -> tuple[list[Any], dict[str, Any]]:
    """Run the driver; the chunks it printed and its summary line."""
    return await run_driver(str(server.make_url("/api/chat")), chat, *extra)


async def test_a_finished_answer_is_read_whole(chats: tuple[FakeChats, TestServer]) -> None:
    chunks, summary = await resume(chats[1], "finished")
    assert chunks == ANSWER
    assert summary["end"] == "done" and summary["status"] == 200
    assert summary["chunks"] == len(ANSWER)
    assert summary["text"] == TEXT
    assert summary["message"]["id"] == "m-1" and summary["message"]["role"] == "assistant"


async def test_abort_after_n_chunks_leaves_mid_answer(chats: tuple[FakeChats, TestServer]) -> None:
    fake, server = chats
    chunks, summary = await resume(server, "open", "--abort-after", "5")
    assert chunks == ANSWER[:5]
    assert summary["end"] == "aborted" and summary["chunks"] == 5
    assert summary["text"] == "Hello, "  # the prefix useChat would show
    async with asyncio.timeout(10):
        await fake.gone.wait()  # the driver really closed the connection


async def test_204_is_no_stream(chats: tuple[FakeChats, TestServer]) -> None:
    chunks, summary = await resume(chats[1], "never-started")
    assert chunks == []
    assert summary == {
        "end": "no-stream", "chunks": 0, "status": 204, "message": None, "text": None,
    }  # fmt: skip


async def test_headers_reach_the_server(chats: tuple[FakeChats, TestServer]) -> None:
    chunks, summary = await resume(chats[1], "private", "--header", f"Authorization: {TOKEN}")
    assert chunks == ANSWER and summary["end"] == "done"
    chunks, summary = await resume(chats[1], "private")
    assert chunks == [] and summary["end"] == "error" and summary["status"] == 401


async def test_a_frame_that_is_no_chunk_breaks_the_transport(
    chats: tuple[FakeChats, TestServer],
) -> None:
    """The pitfall for the hub's dialect: ``event:`` names are ignored, so an ``event: close``
    with ``data: {}`` is parsed as a chunk and fails the whole resume."""
    chunks, summary = await resume(chats[1], "bad")
    assert chunks == ANSWER[:1]
    assert summary["end"] == "error" and "type" in summary["error"]


async def test_bad_arguments_are_refused() -> None:
    process = await asyncio.create_subprocess_exec(
        "node", str(DRIVER), "--chat", "x",
        cwd=JS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=dies_with_us,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 2 and b"--api and --chat are required" in err and out == b""
