"""The web page: ``web/`` at ``/``, the job page at ``/jobs/<id>``, assets under ``/assets/``.

The page is plain files (HTML, CSS, JavaScript modules) with no build step, so caching cannot
rely on file names that carry a content hash. Instead the hub computes one version for the whole
directory (a hash of every file's bytes) and rewrites the page's ``"/assets/`` references to
``"/assets/<version>/``. Modules import each other with relative paths, so they all resolve under
the same versioned prefix, and everything below it can be cached as immutable: a repeat visit
costs one request (the page itself, revalidated with its ETag). Any change to any file changes
the version, so an edit shows at the next reload, with no restart. A request for an older
version (a page loaded before a deploy) still gets the current files, but not cached for long.

The page is the same file for ``/`` and every ``/jobs/<id>``: it reads its own URL, so a job page
can be reloaded, shared, or opened after the job finished. The one thing the page cannot know
from static files is whether this hub runs the demo job runner, so the hub writes it into the
``<html data-demo-jobs>`` attribute; the page then never calls an endpoint that is not there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from hub.api.responses import error
from hub.config import Config

__all__ = ["WEB_DIR", "add_web_routes", "find_web_root"]

log = logging.getLogger("hub.web")

#: The ``web/`` directory of a source checkout, next to the ``hub`` package (this file's folder).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
INDEX = "index.html"
FAVICON = "favicon.svg"

#: What the hub serves, by suffix; anything else in the directory stays private.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
}
#: A guard against serving a huge tree by mistake (web_root = "/").
MAX_FILES = 500
MAX_FILE_BYTES = 4 * 1024 * 1024

IMMUTABLE = "public, max-age=31536000, immutable"
#: Unversioned URLs: cache, but ask the hub (a 304 with the ETag) before each use.
REVALIDATE = "no-cache"
FAVICON_CACHE = "public, max-age=86400"

#: Only files from this hub, and only connections back to it: nothing from a CDN can run here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
_VERSION_RE = re.compile(r"[0-9a-f]{12}")
#: Job ids as they appear in the channel ``job/<id>``.
JOB_ID_PATTERN = r"[A-Za-z0-9_.:@\-]{1,100}"


def find_web_root(config: Config) -> Path | None:
    """The directory to serve: ``web_root`` when set, else ``web/`` next to the package if any."""
    if config.web_root:
        root = Path(config.web_root).resolve()
    elif WEB_DIR.is_dir():
        root = WEB_DIR
    else:
        return None
    return root if (root / INDEX).is_file() else None


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: str


class _Site:
    """The served files, in memory; re-read when any file's size or mtime changes.

    The directory holds a few small files, so a ``stat`` of each per page request is cheap, and
    serving from memory keeps the event loop from blocking on reads.
    """

    def __init__(self, root: Path, demo_jobs: bool) -> None:
        self.root = root
        self._demo_jobs = demo_jobs
        self._signature: tuple[tuple[str, int, int], ...] = ()
        self._files: dict[str, _File] = {}
        self.version = ""

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        found: list[tuple[str, int, int]] = []
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                path = Path(folder, name)
                if name.startswith(".") or path.suffix not in CONTENT_TYPES:
                    continue
                try:
                    stat = path.stat()
                except OSError:  # removed since the directory was listed
                    continue
                if stat.st_size <= MAX_FILE_BYTES:
                    found.append(
                        (path.relative_to(self.root).as_posix(), stat.st_mtime_ns, stat.st_size)
                    )
                if len(found) >= MAX_FILES:
                    return tuple(found)
        return tuple(found)

    def files(self) -> dict[str, _File]:
        signature = self._scan()
        if signature != self._signature:
            self._load(signature)
        return self._files

    def _load(self, signature: tuple[tuple[str, int, int], ...]) -> None:
        raw: dict[str, bytes] = {}
        for name, _, _ in signature:
            with contextlib.suppress(OSError):  # removed meanwhile: the next scan sees it
                raw[name] = (self.root / name).read_bytes()
        whole = hashlib.sha256()
        for name, body in raw.items():
            whole.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
        version = whole.hexdigest()[:12]
        files: dict[str, _File] = {}
        for name, body in raw.items():
            if name == INDEX:
                body = self._render_index(body, version)
            content_type = CONTENT_TYPES[Path(name).suffix]
            files[name] = _File(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:20]}"')
        self._files, self._signature, self.version = files, signature, version

    def _render_index(self, body: bytes, version: str) -> bytes:
        flag = b"on" if self._demo_jobs else b"off"
        body = body.replace(b'data-demo-jobs="off"', b'data-demo-jobs="' + flag + b'"', 1)
        return body.replace(b'"/assets/', b'"/assets/' + version.encode() + b"/")


def _answer(request: web.Request, file: _File, cache: str, page: bool = False) -> web.Response:
    headers = {"Cache-Control": cache, "ETag": file.etag, "X-Content-Type-Options": "nosniff"}
    if page:
        headers |= _PAGE_HEADERS
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, headers={**headers, "Content-Type": file.content_type})


def add_web_routes(app: web.Application, config: Config) -> None:
    """Serve the page when there is one; a missing page is logged, so it is not a mystery."""
    root = find_web_root(config)
    if root is None:
        where = config.web_root or str(WEB_DIR)
        log.warning(
            "no web page: %s has no %s (set web_root to the page's directory)", where, INDEX,
            extra={"event": "web", "web_root": where},
        )  # fmt: skip
        return
    site = _Site(root, config.demo_jobs)
    site.files()  # read once now: a broken directory shows at start, not at the first visit
    # debug: the start-up is one log line; only a missing page is worth a line of its own
    log.debug("web page served at / from %s", root, extra={"event": "web", "web_root": str(root)})

    async def page(request: web.Request) -> web.Response:
        file = site.files().get(INDEX)
        if file is None:  # deleted while the hub runs
            return error(404, f"the page's {INDEX} is missing (see web_root)")
        return _answer(request, file, REVALIDATE, page=True)

    async def asset(request: web.Request) -> web.Response:
        files = site.files()
        path = request.match_info["path"]
        version, _, rest = path.partition("/")
        cache = REVALIDATE
        if _VERSION_RE.fullmatch(version) and rest:
            path = rest
            if version == site.version:
                cache = IMMUTABLE
        # Only names found by the scan are served, so "..", absolute paths and private files
        # (other suffixes, dot files) cannot be reached.
        file = files.get(path)
        if file is None or path == INDEX:
            return error(404, f"the page has no asset {path!r}")
        return _answer(request, file, cache)

    async def favicon(request: web.Request) -> web.Response:
        file = site.files().get(FAVICON)
        if file is None:
            return error(404, f"the page has no {FAVICON}")
        return _answer(request, file, FAVICON_CACHE)

    app.router.add_get("/", page)
    app.router.add_get("/jobs/{id:" + JOB_ID_PATTERN + "}", page)
    app.router.add_get("/assets/{path:.+}", asset)
    app.router.add_get("/favicon.ico", favicon)
