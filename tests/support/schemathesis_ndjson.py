"""schemathesis hooks (``SCHEMATHESIS_HOOKS``): how to send an ``application/x-ndjson`` body.

/openapi.json describes the NDJSON body of ``POST /publish/stream`` as the array of its lines'
objects; this writes such an array one JSON value per line (anything else the fuzzer makes,
as one line), so the fuzzer reaches the line checks instead of giving up on the media type.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    items = value if isinstance(value, list) else [value]
    # json, not orjson: the fuzzer's integers pass 64 bits (the hub answers such a line 400)
    return "".join(json.dumps(item) + "\n" for item in items).encode()
