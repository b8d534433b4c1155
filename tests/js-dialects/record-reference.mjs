// Rewrites durable-reference.json: what the reference server passes of the pinned conformance
// suite, by test name (describe blocks and title joined by " > "). Run after changing a pin:
//   cd tests/js-dialects && node record-reference.mjs
// tests/test_durable_conformance.py checks the pinned suite still has exactly these tests and
// that the hub passes every non-fork test the reference passes in the same run.
import { spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DurableStreamTestServer } from "@durable-streams/server"

const here = new URL(".", import.meta.url).pathname
const version = (name) =>
  JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8")).version

const server = new DurableStreamTestServer({ host: "127.0.0.1", port: 0, longPollTimeout: 500 })
const url = await server.start()
const workdir = mkdtempSync(join(tmpdir(), "ssehub-durable-record-"))
try {
  const report = join(workdir, "report.json")
  // vitest in a child process, awaited (not spawnSync): the server above serves from this one
  const run = spawn(
    join(here, "node_modules", ".bin", "vitest"),
    ["run", "--reporter=json", `--outputFile=${report}`],
    { cwd: here, env: { ...process.env, CI: "1", DURABLE_TARGETS: `reference=${url}` }, stdio: "inherit" },
  )
  await once(run, "exit")
  const results = JSON.parse(readFileSync(report, "utf8")).testResults.flatMap((f) => f.assertionResults)
  const name = (r) => [...r.ancestorTitles.slice(1), r.title].join(" > ")
  const passed = results.filter((r) => r.status === "passed").map(name).sort()
  const notPassed = Object.fromEntries(
    results.filter((r) => r.status !== "passed").map((r) => [name(r), r.status]).sort(),
  )
  const fork = (n) => n.startsWith("Fork - ")
  const record = {
    about:
      "What @durable-streams/server passed of @durable-streams/server-conformance-tests, in memory, " +
      "long-poll timeout 500 ms (written by record-reference.mjs). Forks are the 'Fork - ' blocks.",
    versions: Object.fromEntries(
      ["@durable-streams/server", "@durable-streams/server-conformance-tests", "vitest"].map((n) => [n, version(n)]),
    ),
    node: process.version,
    counts: {
      all: results.length,
      passed: passed.length,
      non_fork: results.filter((r) => !fork(name(r))).length,
      non_fork_passed: passed.filter((n) => !fork(n)).length,
    },
    passed,
    not_passed: notPassed,
  }
  writeFileSync(join(here, "durable-reference.json"), JSON.stringify(record, null, 2) + "\n")
  console.log(JSON.stringify(record.counts))
} finally {
  rmSync(workdir, { recursive: true, force: true })
  await server.stop()
}
