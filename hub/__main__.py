"""Command line: ``python -m hub serve`` runs the hub; ``python -m hub publish`` posts one event;
``python -m hub close`` closes a channel (``POST /channels/{name}/close``).

Configuration errors print one line naming the key and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

__all__ = ["main"]

#: For ``publish``: not HUB_* because those are the server's settings, checked strictly.
URL_ENV = "SSEHUB_URL"
TOKEN_ENV = "SSEHUB_TOKEN"


DESCRIPTION = """\
A Server-Sent Events hub. "serve" runs it; "publish" posts one event to a running hub;
"close" closes a channel there (no more events; its history stays readable).
A configuration error prints one line naming the key and exits with status 2."""


def _prog() -> str:
    """What the user typed: ``ssehub`` for the console script, ``python -m hub`` otherwise."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m hub" if name in ("", "__main__.py", "-c") else name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_prog(), description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--config", help="TOML file (default: $HUB_CONFIG, else ./config.toml)")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", type=int, help="TCP port (0: any free port)")
    serve.add_argument("--backplane", help='"memory" or a Redis URL')
    serve.add_argument(
        "--profile",
        help='"default" (no limits per client) or "public" (limits per client address for the'
        " open internet; settings given explicitly win)",
    )
    serve.add_argument(
        "--workers",
        type=_workers_flag,
        help='processes serving the port: a number, or "auto" (one per CPU); 1: one process',
    )
    serve.add_argument("--log-format", choices=("text", "json"))
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    publish = commands.add_parser("publish", help="publish one event to a running hub")
    publish.add_argument("channel", metavar="CHANNEL", help="e.g. job-42 or orders/eu")
    publish.add_argument(
        "data",
        metavar="DATA",
        help="the event data: text, or JSON with --json; - reads it from stdin and @FILE from"
        " FILE (like curl; one final newline is dropped)",
    )
    publish.add_argument("--event", default=None, help="event type (default: message)")
    publish.add_argument("--json", action="store_true", help="DATA is JSON, not text")
    publish.add_argument(
        "--raw", action="store_true", help="DATA is the data itself, even if it is - or @..."
    )
    _hub_arguments(publish)
    publish.add_argument("--idempotency-key", help="a retry with the same key publishes once")
    close = commands.add_parser(
        "close", help="close a channel of a running hub: no more events, its history kept"
    )
    close.add_argument("channel", metavar="CHANNEL", help="e.g. job-42 or chat/7")
    _hub_arguments(close)
    return parser


def _hub_arguments(command: argparse.ArgumentParser) -> None:
    """Where the hub is and the token, for the commands that talk to one."""
    command.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, "http://127.0.0.1:8080"),
        help=f"the hub's base URL (default: ${URL_ENV} or http://127.0.0.1:8080)",
    )
    command.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default: ${TOKEN_ENV})"
    )


def _workers_flag(text: str) -> int | str:
    """``--workers``: a number stays a number (the setting's check says what is allowed)."""
    return int(text) if text.isdigit() else text


def _serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    # Until the event loop installs its own handlers, a SIGTERM must still end the process: as
    # PID 1 in a container, a signal with no handler is not delivered at all, and `docker stop`
    # would wait its whole grace period and then kill.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from hub import logs, worker
    from hub.config import ConfigError, load
    from hub.config_checks import workers_of
    from hub.server import run  # imports aiohttp: after the handler, and not for `publish`

    if worker.number():
        worker.die_with_supervisor()  # before anything slow: a worker never outlives it

    try:
        config = load(
            args.config,
            overrides={
                "host": args.host,
                "port": args.port,
                "backplane": args.backplane,
                "profile": args.profile,
                "log_format": args.log_format,
                "log_level": args.log_level,
                "workers": args.workers,
            },
        )
    except ConfigError as problem:
        print(f"ssehub: config error: {problem}", file=sys.stderr)
        return 2
    if worker.number():
        logs.setup(config.log_format, config.log_level, worker.number())
        return run(worker.as_worker(config), worker=True)
    logs.setup(config.log_format, config.log_level)
    if workers_of(config.workers) > 1:
        from hub.supervisor import supervise

        return supervise(config, argv)
    return run(config)


def _read_data(argument: str, raw: bool) -> str:
    """DATA as given, or from stdin (``-``) or a file (``@path``), as curl's ``-d`` reads it.

    Raises ``ValueError`` with the message to print. One final newline (the one ``echo`` or an
    editor adds) is dropped, so ``echo hello | ssehub publish c -`` sends ``hello``.
    """
    if raw or (argument != "-" and not argument.startswith("@")):
        return argument
    where = "stdin" if argument in ("-", "@-") else argument[1:]
    try:
        if where == "stdin":
            text = sys.stdin.buffer.read().decode()
        else:
            with open(where, "rb") as file:
                text = file.read().decode()
    except OSError as problem:
        raise ValueError(f"cannot read DATA from {where!r}: {problem.strerror}") from None
    except UnicodeDecodeError as problem:
        raise ValueError(f"DATA from {where!r} is not UTF-8 text: {problem.reason}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _publish(args: argparse.Namespace) -> int:
    try:
        text = _read_data(args.data, args.raw)
    except ValueError as problem:
        print(f"ssehub: {problem}", file=sys.stderr)
        return 2
    if args.json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as problem:
            print(f"ssehub: DATA is not valid JSON: {problem}", file=sys.stderr)
            return 2
    else:
        data = text
    body: dict[str, object] = {"data": data}
    if args.event is not None:
        body["event"] = args.event
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    return _post(args, "events", body, headers)


def _post(
    args: argparse.Namespace, action: str, body: object, headers: dict[str, str] | None = None
) -> int:
    """POST ``body`` as JSON to ``/channels/<channel>/<action>``; print the hub's JSON answer
    (exit 0), or its error (exit 1)."""
    channel = urllib.parse.quote(args.channel, safe="/:@")
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}/channels/{channel}/{action}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            print(answer.read().decode().rstrip("\n"))  # the hub ends JSON with one already
            return 0
    except urllib.error.HTTPError as problem:
        print(f"ssehub: {problem.code}: {problem.read().decode().rstrip()}", file=sys.stderr)
        return 1
    except urllib.error.URLError as problem:
        from hub.config_access import redact_url  # (a URL may carry a password)

        print(f"ssehub: cannot reach {redact_url(args.url)}: {problem.reason}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args, argv)
    if args.command == "close":
        return _post(args, "close", {})
    return _publish(args)


if __name__ == "__main__":
    sys.exit(main())
