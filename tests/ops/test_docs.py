"""The docs run as written, link to what exists, and name every module of ``hub/``.

Shell examples are fenced blocks, and what a test does with one is said by its info string:

- ```` ```sh ````: run, word for word, in one ``bash`` per page (so a variable set in one block is
  there in the next), from the repository's root, against a hub this test started;
- ```` ```console ````: the same, one ``$ `` command at a time, and its output must match the
  lines under it (``...`` inside a line matches any text, a line of only ``...`` any lines);
- ```` ```sh hub ````: the hub the page's examples talk to, as a user starts it
  (``NAME=value ... scripts/serve [flags]``). The test starts the same command's hub itself
  (``python -m hub serve --config config.toml``, which is what ``scripts/serve`` runs) on
  127.0.0.1 and a free port, so a hub the reader already runs on 8080 is never in the way.
  A page with no such block talks to ``scripts/serve`` as shipped;
- ```` ```sh no-run <why> ````: shown, never run (a container engine, a Redis cluster, a command
  that runs until Ctrl-C); the reason is required;
- any other fence must name its language (``js``, ``toml``, ``python``, ``text``, ...): a
  ``bash``, ``shell`` or bare fence fails, so a shell example cannot slip out of the test.

The examples find the hub through ``$HUB`` (``export HUB=${HUB:-http://127.0.0.1:8080}`` in the
docs), and the ``ssehub`` command line through ``$SSEHUB_URL``: the test sets both to its
hub's address. ``curl`` runs with ``--fail-with-body`` from a curlrc of the test's own, so an
example that gets a 4xx or 5xx fails here instead of printing an error nobody reads. An event
stream never ends by itself, so the docs bound it with ``--max-time``: curl's exit status 28
("the time given was reached") is the one failure allowed, in the examples that say
``--max-time``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import ROOT, HubProcess, clean_env, dies_with_us

pytestmark = pytest.mark.any_backplane

DOC_PAGES = sorted(
    [ROOT / name for name in ("README.md", "CONTRIBUTING.md", "ARCHITECTURE.md")]
    + list((ROOT / "docs").rglob("*.md"))
)
#: the pages whose examples run (CONTRIBUTING.md's commands run the checks themselves: no-run)
RUN_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LANGUAGES = {"sh", "console", "js", "toml", "python", "text", "json", "yaml", "nginx", "http"}
README_MAX_LINES = 250
#: Pages another branch brings (issue 20's limits page); links to them may not resolve yet.
#: Empty this once they are merged.
ARRIVING: set[Path] = set()
#: curl's exit status when --max-time is reached: how the docs end a stream on purpose
CURL_TIMED_OUT = 28
MARK = "\x1e"


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    options: str  # what follows the language in the info string
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a page, indentation (a block inside a list item) removed."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)(`{3,})(.*)$", lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, info = opening.groups()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end])
            end += 1
        assert end < len(lines), f"{page.relative_to(ROOT)}:{index + 1}: the fence never closes"
        language, _, options = info.strip().partition(" ")
        found.append(Block(page, index + 1, language, options.strip(), "\n".join(body) + "\n"))
        index = end + 1
    return found


def test_every_fence_says_what_it_is() -> None:
    problems = []
    for page in DOC_PAGES:
        for block in blocks_of(page):
            if block.language not in LANGUAGES:
                problems.append(f"{block.where}: fence language {block.language!r}")
            elif block.language in ("sh", "console"):
                option, _, reason = block.options.partition(" ")
                if option not in ("", "hub", "no-run") or (option == "no-run" and not reason):
                    problems.append(f"{block.where}: expected `sh`, `sh hub` or `sh no-run <why>`")
                if option == "hub" and block.language != "sh":
                    problems.append(f"{block.where}: a hub block is `sh hub`")
            elif block.options:
                problems.append(f"{block.where}: only sh and console blocks take options")
    assert not problems, "\n".join(problems)


# -- the hub a page talks to ------------------------------------------------------------------


@dataclass
class HubCommand:
    env: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


def hub_of(page: Path) -> HubCommand:
    """The page's ``sh hub`` block as a command, or scripts/serve as shipped."""
    hubs = [b for b in blocks_of(page) if b.language == "sh" and b.options == "hub"]
    assert len(hubs) <= 1, f"{page.relative_to(ROOT)}: one `sh hub` block per page at most"
    if not hubs:
        return HubCommand()
    words = shlex.split(hubs[0].text, comments=True)
    command = HubCommand()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        command.env[name] = value
    assert words[:1] == ["scripts/serve"], f"{hubs[0].where}: a hub block runs scripts/serve"
    command.flags = words[1:]
    assert not {"--host", "--port", "--config"} & set(command.flags), (
        f"{hubs[0].where}: the test chooses host, port and config; set others"
    )
    assert not {"HUB_HOST", "HUB_PORT", "HUB_CONFIG"} & set(command.env), hubs[0].where
    return command


# -- running a page's examples ------------------------------------------------------------------


@dataclass
class Step:
    block: Block
    command: str
    expected: list[str] | None  # console output to match; None: a sh block, not compared


def steps_of(page: Path) -> list[Step]:
    steps: list[Step] = []
    for block in blocks_of(page):
        if block.options or block.language not in ("sh", "console"):
            continue
        if block.language == "sh":
            steps.append(Step(block, block.text, None))
            continue
        current: list[str] | None = None
        output: list[str] = []
        for line in block.text.splitlines():
            if line.startswith("$ ") and not (current and current[-1].endswith("\\")):
                if current is not None:
                    steps.append(Step(block, "\n".join(current) + "\n", output))
                current, output = [line[2:]], []
            elif current is not None and current[-1].endswith("\\") and not output:
                current.append(line)
            else:
                assert current is not None, f"{block.where}: console output before any `$ `"
                output.append(line)
        assert current is not None, f"{block.where}: a console block without a `$ ` command"
        steps.append(Step(block, "\n".join(current) + "\n", output))
    return steps


def script_of(steps: list[Step]) -> str:
    """One bash script for the page: the steps in order, a marker after each. A failure stops
    the script (and the test), but for curl's 28 in a step that bounds a stream with --max-time
    (whichever command of its pipeline or block reports it: pipefail, or ``wait``)."""
    parts = [
        "set -o pipefail",
        "exec 2>&1",
        "__failed() {",
        f'  if [ "$1" = {CURL_TIMED_OUT} ] && [ "$__bounded" = 1 ]; then return 0; fi',
        f'  printf \'\\n{MARK}failed %s: %s\\n\' "$1" "$2"',
        "  exit 97",
        "}",
        "trap '__failed $? \"$BASH_COMMAND\"' ERR",
    ]
    for number, step in enumerate(steps):
        parts.append(f"__bounded={int('--max-time' in step.command)}")
        parts.append(step.command.rstrip("\n"))
        parts.append(f"printf '\\n{MARK}step {number}\\n'")
    return "\n".join(parts) + "\n"


def matches(expected: list[str], actual: str) -> bool:
    """Doctest-like: ``...`` in a line is any text; a line of only ``...`` is any lines."""
    pattern = ""
    for line in "\n".join(expected).strip("\n").split("\n"):
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += r"[^\n]*".join(re.escape(part) for part in line.rstrip().split("...")) + "\n"
    text = "\n".join(line.rstrip() for line in actual.strip("\n").split("\n")) + "\n"
    if not "\n".join(expected).strip():
        return not actual.strip()
    return re.fullmatch(pattern, text) is not None


def run_page(page: Path, hub_url: str, tmp: Path) -> None:
    steps = steps_of(page)
    (tmp / ".curlrc").write_text("fail-with-body\n")
    env = clean_env(
        HUB=hub_url, SSEHUB_URL=hub_url, CURL_HOME=str(tmp), HOME=str(tmp), PATH=os.environ["PATH"]
    )
    env.pop("PYTHONPATH")  # the docs' commands run as a user's would: the venv's installed hub
    try:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc"],
            input=script_of(steps),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            preexec_fn=dies_with_us,
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(
            f"{page.relative_to(ROOT)}: examples still running after 120 s:\n{error.stdout}"
        ) from None
    chunks = done.stdout.split(MARK)
    for number, step in enumerate(steps):
        # step k printed chunks[k] (after the marker line of step k-1); then its own marker
        text = chunks[number] if number == 0 else chunks[number].partition("\n")[2]
        finished = number + 1 < len(chunks) and chunks[number + 1].startswith(f"step {number}\n")
        assert finished, (
            f"{step.block.where}: this example failed:\n{step.command}--- output:\n{text}"
            + (chunks[number + 1] if number + 1 < len(chunks) else "")
        )
        if step.expected is not None:
            assert matches(step.expected, text), (
                f"{step.block.where}: `{step.command.strip()}` printed\n{text}\n--- the docs say\n"
                + "\n".join(step.expected)
            )
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    "page", [page for page in RUN_PAGES if steps_of(page)], ids=lambda p: str(p.relative_to(ROOT))
)
async def test_examples_run_as_written(page: Path, tmp_path: Path) -> None:
    command = hub_of(page)
    hub = await HubProcess.spawn(
        "--config",
        "config.toml",
        *command.flags,
        env={"HUB_HOST": "127.0.0.1", "HUB_PORT": "0", **command.env},
    )
    try:
        await hub.started()
        await asyncio.to_thread(run_page, page, hub.url, tmp_path)
    finally:
        await hub.stop()
    assert "Traceback" not in hub.output, hub.output


# -- the rest of the docs' promises -------------------------------------------------------------


def test_readme_is_short() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    fenced, anchors = False, set()
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def test_links_point_at_what_exists() -> None:
    problems = []
    for page in [*DOC_PAGES, ROOT / "bench" / "README.md"]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            goal = (page.parent / path).resolve() if path else page
            if not goal.exists() and goal in ARRIVING:
                continue
            if not goal.exists():
                problems.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and goal.suffix == ".md" and anchor not in _anchors(goal):
                problems.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    assert not problems, "\n".join(problems)


def _modules() -> dict[Path, str]:
    """Every module of hub/: its path relative to the root, and its dotted name."""
    found = {}
    for path in sorted((ROOT / "hub").rglob("*.py")):
        relative = path.relative_to(ROOT)
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[relative] = ".".join(parts)
    return found


def test_architecture_names_every_module() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    missing = [
        str(path)
        for path, dotted in _modules().items()
        if str(path) not in text
        and re.search(r"(?<![\w.])" + re.escape(dotted) + r"(?![\w])(?!\.\w)", text) is None
    ]
    assert not missing, "ARCHITECTURE.md does not name: " + ", ".join(missing)


def test_architecture_names_no_module_that_is_gone() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    gone = sorted({p for p in re.findall(r"\bhub/[\w/]+\.py\b", text) if not (ROOT / p).is_file()})
    assert not gone, "ARCHITECTURE.md names modules that do not exist: " + ", ".join(gone)


def test_configuration_reference_lists_every_setting_with_its_default() -> None:
    """docs/configuration.md has one row per setting of hub/config.py, with the code's default:
    a setting added, renamed or re-defaulted in the code fails here until the reference says so."""
    from hub.__main__ import _parser
    from hub.config import Config

    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == sorted(Config.keys())
    for key, spec in Config.keys().items():
        assert rows[key][1] == f"`HUB_{key.upper()}`", key
        assert rows[key][3] == f"`{_toml(spec.default)}`", key
    serve = next(
        action.choices["serve"]
        for action in _parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    flags = {option for action in serve._actions for option in action.option_strings}
    documented = {cells[2].strip("`") for cells in rows.values() if cells[2]}
    assert documented == flags - {"-h", "--help", "--config"}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)
