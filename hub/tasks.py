"""Background tasks that are all kept, cancelled and awaited on shutdown.

A task nobody holds may be garbage-collected mid-run, and one nobody awaits on shutdown logs
"Task was destroyed but it is pending"; the hub keeps every task it starts here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["Tasks"]


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self.keep(asyncio.create_task(coro, name=name))

    def keep(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
