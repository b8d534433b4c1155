#!/usr/bin/env python3
"""An LLM answer streamed through ssehub for the AI SDK's ``useChat({resume: true})``.

A fake model's tokens become the AI SDK's UI message chunks (``start``, ``text-start``,
``text-delta``..., ``text-end``, ``finish``), each published as one event to channel
``chat/<id>``, whose ``data`` is the chunk; then the channel is closed. A browser's
``DefaultChatTransport({api: "<hub>/ai/chat"})`` resumes chat ``<id>`` from
``GET <hub>/ai/chat/<id>/stream``: the whole answer so far, then live, then ``[DONE]`` at the
close; after the close it still reads the whole answer, until ``history_ttl``
(docs/dialects/ai-sdk.md).

    python examples/ai_chat_producer.py --url http://127.0.0.1:8080 --chat 42
    curl -sN http://127.0.0.1:8080/ai/chat/42/stream

Two ways to publish: ``--stream`` sends every chunk as a line of one ``POST /publish/stream``
request (NDJSON: one request for the whole answer, receipts read back as the request goes);
without it, one ``POST /channels/chat/<id>/events`` per chunk, each with an ``Idempotency-Key``
so a retry never publishes a token twice. ``--delay`` is the pause between tokens (a model's
pace). With ``SSEHUB_TOKEN`` set, it is sent as the bearer token. Only the standard library.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

__all__ = ["answer_chunks", "main"]

ANSWER = (
    "Server-Sent Events carry this answer token by token; close the tab, open it again, and "
    "the hub replays what you missed, then the rest as it comes."
)


def fake_model(text: str = ANSWER) -> Iterator[str]:
    """Tokens as a model would send them: words with their trailing space."""
    words = text.split(" ")
    for index, word in enumerate(words):
        yield word if index == len(words) - 1 else word + " "


def answer_chunks(message_id: str, tokens: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The UI message chunks of one text answer (the AI SDK's ``uiMessageChunkSchema``)."""
    yield {"type": "start", "messageId": message_id}
    yield {"type": "start-step"}
    yield {"type": "text-start", "id": "text-1"}
    for token in tokens:
        yield {"type": "text-delta", "id": "text-1", "delta": token}
    yield {"type": "text-end", "id": "text-1"}
    yield {"type": "finish-step"}
    yield {"type": "finish", "finishReason": "stop"}


def _headers(content_type: str = "application/json") -> dict[str, str]:
    headers = {"Content-Type": content_type}
    token = os.environ.get("SSEHUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _post(url: str, body: Any, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def publish_each(hub: str, channel: str, chunks: Iterator[dict[str, Any]], delay: float) -> int:
    """One publish per chunk; a 503 is retried with the same Idempotency-Key."""
    count = 0
    for number, chunk in enumerate(chunks):
        headers = {**_headers(), "Idempotency-Key": f"{channel}:{number}"}
        for attempt in range(5):
            try:
                _post(f"{hub}/channels/{channel}/events", {"data": chunk}, headers)
                break
            except urllib.error.HTTPError as error:
                if error.code != 503 or attempt == 4:
                    raise
                time.sleep(0.2 * 2**attempt)
        count += 1
        time.sleep(delay)
    return count


def publish_stream(hub: str, channel: str, chunks: Iterator[dict[str, Any]], delay: float) -> int:
    """All chunks as NDJSON lines of one ``POST /publish/stream`` (chunked request body)."""

    def lines() -> Iterator[bytes]:
        for chunk in chunks:
            yield json.dumps({"channel": channel, "data": chunk}).encode() + b"\n"
            time.sleep(delay)

    address = urlsplit(hub)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port or 80)
    connection.request(
        "POST",
        "/publish/stream",
        body=lines(),
        headers=_headers("application/x-ndjson"),
        encode_chunked=True,
    )
    response = connection.getresponse()
    receipts = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    connection.close()
    refused = [r for r in receipts if "error" in r]
    if response.status != 200 or refused:
        raise SystemExit(f"the hub refused: {response.status} {refused[:1]}")
    return len(receipts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default=os.environ.get("HUB", "http://127.0.0.1:8080"))
    parser.add_argument("--chat", default=uuid.uuid4().hex[:12], help="the chat id")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between tokens")
    parser.add_argument("--stream", action="store_true", help="one POST /publish/stream")
    options = parser.parse_args(argv)
    hub = options.url.rstrip("/")
    channel = f"chat/{options.chat}"
    chunks = answer_chunks(f"msg-{options.chat}", fake_model())
    publish = publish_stream if options.stream else publish_each
    count = publish(hub, channel, chunks, options.delay)
    closed = _post(f"{hub}/channels/{channel}/close", {}, _headers())
    print(f"published {count} chunks to {channel}, closed: {closed}", file=sys.stderr)
    print(f"resume it: curl -sN {hub}/ai/chat/{options.chat}/stream", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
