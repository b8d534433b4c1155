"""The AI SDK's resumable chat stream: ``GET /ai/{name}/stream`` (``useChat({resume: true})``).

The ``ai`` package's ``DefaultChatTransport({api})`` resumes chat ``<id>`` with
``GET {api}/<id>/stream``; pointed at ``<hub>/ai/chat`` it reads channel ``chat/<id>`` here. A
producer publishes the answer's UI message chunks (each event's ``data`` *is* one chunk) and
closes the channel at the end (``POST /channels/{name}/close``). Parts: ``wire`` (the
``Format``: chunk frames, ``data: [DONE]`` at a close) and ``route`` (the request's checks and
its answers, the one ``Hub.stream`` call).
"""

from hub.dialects.ai_sdk.route import AI_PATH, add_ai_sdk_routes

__all__ = ["AI_PATH", "add_ai_sdk_routes"]
