"""The web page as files: served at ``/`` and ``/jobs/<id>``, assets cached by version, a favicon,
nothing private reachable, and a clear log line when there is no page to serve.

(What the page does in a browser is tests/web/test_browser.py.)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from hub import web as hub_web
from tests.conftest import HubServer, MakeHub

ASSET_RE = re.compile(r'"(/assets/[^"]+)"')
VERSIONED_RE = re.compile(r"/assets/([0-9a-f]{12})/(.+)")
IMPORT_RE = re.compile(r'from "\./([^"]+)"')


async def get(hub: HubServer, path: str, **kw: Any) -> tuple[int, CIMultiDict[str], bytes]:
    async with hub.session.get(f"{hub.url}{path}", **kw) as response:
        return response.status, response.headers.copy(), await response.read()


@pytest.mark.any_backplane
async def test_page_at_root_with_security_headers(hub: HubServer) -> None:
    """The page is HTML from the hub itself: a CSP allows nothing from elsewhere (no CDN)."""
    status, headers, body = await get(hub, "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache", "revalidated each time, so edits show at once"
    assert headers["ETag"]
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b'<script type="module"' in body
    assert b'data-demo-jobs="off"' in body, "demo_jobs is off by default in code"


@pytest.mark.any_backplane
async def test_demo_flag_is_written_into_the_page(make_hub: MakeHub) -> None:
    """The page learns from the hub whether "Start job" can work, without probing for it."""
    hub = await make_hub(demo_jobs=True)
    _, _, body = await get(hub, "/")
    assert b'data-demo-jobs="on"' in body


@pytest.mark.any_backplane
async def test_job_page_url_serves_the_page(hub: HubServer) -> None:
    """``/jobs/<id>`` is the same page (it reads its own URL), so a job link can be reloaded."""
    _, _, root = await get(hub, "/")
    status, headers, body = await get(hub, "/jobs/3f2a9c01be47")
    assert status == 200 and body == root
    assert "Content-Security-Policy" in headers
    status, _, body = await get(hub, "/jobs/not%20an%20id")
    assert status == 404
    assert b'"error"' in body


@pytest.mark.any_backplane
async def test_head_of_the_page(hub: HubServer) -> None:
    async with hub.session.head(f"{hub.url}/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.any_backplane
async def test_assets_are_versioned_and_immutable(hub: HubServer) -> None:
    """Every asset the page names, and every module those import, is served under one version
    prefix with a long immutable cache life and its right type."""
    _, _, body = await get(hub, "/")
    assets = ASSET_RE.findall(body.decode())
    assert {"style.css", "favicon.svg", "js/app.js"} <= {
        VERSIONED_RE.fullmatch(path).group(2)  # type: ignore[union-attr]
        for path in assets
    }
    versions = {VERSIONED_RE.fullmatch(path).group(1) for path in assets}  # type: ignore[union-attr]
    assert len(versions) == 1, "one version for the whole directory"
    (version,) = versions
    modules = ["js/app.js"]
    seen: set[str] = set()
    while modules:  # follow the module graph: relative imports resolve under the same prefix
        module = modules.pop()
        if module in seen:
            continue
        seen.add(module)
        status, headers, text = await get(hub, f"/assets/{version}/{module}")
        assert status == 200, module
        assert headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        modules += [f"js/{name}" for name in IMPORT_RE.findall(text.decode())]
    assert {"js/stream.js", "js/clocks.js", "js/job.js", "js/console.js", "js/dom.js"} <= seen
    status, headers, _ = await get(hub, f"/assets/{version}/style.css")
    assert status == 200 and headers["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.any_backplane
async def test_unversioned_and_stale_asset_urls_revalidate(hub: HubServer) -> None:
    """A page loaded before a deploy asks for an old version: it gets today's file, not cached
    for a year under a name that now means something else."""
    for path in ("/assets/style.css", "/assets/000000000000/style.css"):
        status, headers, body = await get(hub, path)
        assert status == 200, path
        assert headers["Cache-Control"] == "no-cache"
        assert b"--accent" in body


@pytest.mark.any_backplane
async def test_etag_answers_304(hub: HubServer) -> None:
    _, headers, _ = await get(hub, "/assets/js/app.js")
    status, again, body = await get(
        hub, "/assets/js/app.js", headers={"If-None-Match": headers["ETag"]}
    )
    assert status == 304 and body == b""
    assert again["ETag"] == headers["ETag"]


@pytest.mark.any_backplane
async def test_favicon(hub: HubServer) -> None:
    """Both the icon the page links and /favicon.ico (which some clients ask for) exist."""
    _, _, body = await get(hub, "/")
    assert b'rel="icon" href="/assets/' in body
    status, headers, icon = await get(hub, "/favicon.ico")
    assert status == 200
    assert headers["Content-Type"] == "image/svg+xml"
    assert icon.startswith(b"<svg")
    assert "max-age" in headers["Cache-Control"]


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../hub/app.py",
        "/assets/%2e%2e/pyproject.toml",
        "/assets/..%2fpyproject.toml",
        "/assets/index.html",
        "/assets/js/nothing.js",
        "/assets//etc/passwd",
    ],
)
@pytest.mark.any_backplane
async def test_nothing_outside_the_page_is_served(hub: HubServer, path: str) -> None:
    status, headers, body = await get(hub, path)
    assert status == 404, body
    assert headers["Content-Type"] == "application/json"
    assert b"root:" not in body and b"[project]" not in body


@pytest.mark.any_backplane
async def test_private_files_in_web_root_are_not_served(make_hub: MakeHub, tmp_path: Path) -> None:
    """Only known static types are served: a stray .py or a dot file stays private."""
    (tmp_path / "index.html").write_text('<link rel="stylesheet" href="/assets/a.css">')
    (tmp_path / "a.css").write_text("p {}")
    (tmp_path / "secret.py").write_text("TOKEN = 'x'")
    (tmp_path / ".env").write_text("TOKEN=x")
    hub = await make_hub(web_root=str(tmp_path))
    assert (await get(hub, "/assets/a.css"))[0] == 200
    for path in ("/assets/secret.py", "/assets/.env"):
        assert (await get(hub, path))[0] == 404, path


@pytest.mark.any_backplane
async def test_web_root_setting_and_live_edits(make_hub: MakeHub, tmp_path: Path) -> None:
    """``web_root`` serves another directory; an edited file shows at the next load, under a
    new version, without a restart."""
    (tmp_path / "index.html").write_text('<script src="/assets/app.js"></script>')
    (tmp_path / "app.js").write_text("let a = 1;")
    hub = await make_hub(web_root=str(tmp_path))
    _, _, first = await get(hub, "/")
    (old,) = ASSET_RE.findall(first.decode())
    (tmp_path / "app.js").write_text("let a = 2; // edited")
    _, _, second = await get(hub, "/")
    (new,) = ASSET_RE.findall(second.decode())
    assert old != new
    _, _, script = await get(hub, new)
    assert script == b"let a = 2; // edited"


@pytest.mark.any_backplane
async def test_no_index_means_no_page_and_a_log_line(
    make_hub: MakeHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.web"):
        hub = await make_hub(web_root=str(tmp_path))
    assert any("no web page" in record.getMessage() for record in caplog.records)
    status, headers, _ = await get(hub, "/")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    status, _, _ = await get(hub, "/healthz")
    assert status == 200, "the hub itself runs without a page"


@pytest.mark.any_backplane
async def test_no_web_directory_next_to_the_package(
    make_hub: MakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An installed hub without web/ (a wheel) starts fine and says why there is no page."""
    monkeypatch.setattr(hub_web, "WEB_DIR", tmp_path / "missing")
    with caplog.at_level(logging.WARNING, logger="hub.web"):
        hub = await make_hub()
    assert any(str(tmp_path / "missing") in record.getMessage() for record in caplog.records)
    assert (await get(hub, "/"))[0] == 404


def test_default_web_root_is_next_to_the_package() -> None:
    import hub

    assert Path(hub.__file__).resolve().parent.parent / "web" == hub_web.WEB_DIR
    assert (hub_web.WEB_DIR / "index.html").is_file()


@pytest.mark.any_backplane
async def test_index_removed_while_running(make_hub: MakeHub, tmp_path: Path) -> None:
    """The files are re-read when they change, so a removed page is a 404, not a crash."""
    (tmp_path / "index.html").write_text("<p>hi</p>")
    hub = await make_hub(web_root=str(tmp_path))
    assert (await get(hub, "/"))[0] == 200
    (tmp_path / "index.html").unlink()
    status, _, body = await get(hub, "/")
    assert status == 404 and b"index.html is missing" in body
