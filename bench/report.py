"""Result tables of ``bench.run`` and ``bench.scaleout``: numbers, flags, text or markdown.

Which rows and columns a table has is each entry point's business; how a figure is
written, which flags it carries and how a table is laid out is this module's, so that
both print alike.
"""

from __future__ import annotations

import math
from typing import Any

from bench.measure import CLIENT_SATURATED, NOISY_MACHINE

__all__ = ["LEGEND", "flags", "num", "table"]

#: What the flags after a figure mean; printed under every report.
LEGEND = (
    f"* load client or publisher above {100 * CLIENT_SATURATED:.0f} % of a core: "
    "the figure is client-limited",
    "! events lost (missing + duplicated + reordered + foreign), see JSON",
    f"~ other processes used > {NOISY_MACHINE:.0%} of a core during the window: "
    "machine not quiet, re-run",
)


def num(value: Any, digits: int = 0) -> str:
    """``12345.6`` → ``"12,346"``; None and NaN → ``"—"``; other values as they are."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def flags(result: dict[str, Any]) -> str:
    """The flags (see LEGEND) a result's figures carry: ``*``, ``!``, ``~``."""
    return (
        ("*" if result.get("client_saturated") or result.get("publisher_saturated") else "")
        + ("!" if result.get("loss") else "")
        + ("~" if result.get("noisy") else "")
    )


def table(rows: list[list[str]], markdown: bool) -> list[str]:
    """The lines of a table whose first row is the header: markdown, or plain text
    with the first column left-aligned and the others right-aligned."""
    if markdown:
        out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows[1:]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
