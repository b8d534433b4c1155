"""The AI SDK resume driver (tests/js-dialects/ai-resume.mjs), run from a test.

The driver resumes a chat through the ``ai`` package's own ``DefaultChatTransport`` and prints
each UI message chunk as a JSON line, then a summary line (how it ended, the HTTP status, the
rebuilt message and text). Both the driver's own tests (against a fake endpoint) and the hub's
AI SDK route tests run it the same way.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.support.processes import dies_with_us

__all__ = ["DRIVER", "JS", "run_driver"]

JS = Path(__file__).parents[1] / "js-dialects"
DRIVER = JS / "ai-resume.mjs"


async def run_driver(api: str, chat: str, *extra: str) -> tuple[list[Any], dict[str, Any]]:
    """Resume ``chat`` from ``api`` (``<base>/ai/chat``): the chunks the driver printed and its
    summary line; fails the test on a non-zero exit or a missing summary."""
    process = await asyncio.create_subprocess_exec(
        "node", "--no-warnings", str(DRIVER), "--api", api, "--chat", chat, *extra,
        cwd=JS,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=dies_with_us,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines and "end" in lines[-1], out.decode()
    return [line["chunk"] for line in lines[:-1]], lines[-1]
