"""NATS backplane: one atomic batch publish (all messages or none, consecutive sequences).

Shared by the publisher (a batch of events, a keyed batch's record: ``hub.backplane.nats`` points
1 and 5) and the Durable Streams part (events, markers and the stream's state record in one
step: ``hub.backplane.nats_streams``). A batch whose answer timed out is withdrawn from the
client's outgoing buffer (point 6), so a reconnect cannot send it later.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from hub.backplane.nats_connection import Connection
from hub.backplane.nats_link import API_TIMEOUT, ApiError

__all__ = ["MAX_ATOMIC_BATCH", "OP", "Message", "atomic"]

#: The header naming the request a message belongs to (what ``compat_nats`` withdraws).
OP = "Ssehub-Op"
#: Messages in one atomic batch at most (nats-server's default limit).
MAX_ATOMIC_BATCH = 1000

#: A message to publish: subject, body, headers.
Message = tuple[str, bytes, dict[str, str]]


async def atomic(connection: Connection, messages: Sequence[Message]) -> int:
    """Publish ``messages`` as one atomic batch; the sequence of the last one. An error answer
    (e.g. a wrong last subject sequence) raises ``ApiError``: nothing was stored."""
    nc = connection.require()
    batch = uuid.uuid4().hex
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        for number, (subject, body, headers) in enumerate(messages, 1):
            headers = headers | {
                "Nats-Batch-Id": batch,
                "Nats-Batch-Sequence": str(number),
                OP: batch,
            }
            commit = number == len(messages)
            if commit:
                headers["Nats-Batch-Commit"] = "1"
            await nc.publish(subject, body, reply=inbox if commit else "", headers=headers)
        reply = await sub.next_msg(timeout=API_TIMEOUT)
    except BaseException:
        connection.withdraw(batch.encode())
        raise
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    answer: dict[str, Any] = orjson.loads(reply.data) if reply.data else {}
    error = answer.get("error")
    if error:
        raise ApiError(int(error.get("err_code", 0)), str(error.get("description", "")))
    return int(answer["seq"])
