// The published Durable Streams conformance suite against one or more servers in one vitest run.
// DURABLE_TARGETS="reference=http://127.0.0.1:1234,hub=http://127.0.0.1:5678": one describe block
// per target, named by the target, around the whole suite; the suite's paths are /v1/stream/<name>
// under each URL. Run by tests/test_durable_conformance.py with the JSON reporter.
import { describe } from "vitest"
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const targets = (process.env.DURABLE_TARGETS ?? "")
  .split(",")
  .filter(Boolean)
  .map((pair) => {
    const at = pair.indexOf("=")
    if (at <= 0) throw new Error(`DURABLE_TARGETS entry is not name=url: ${pair}`)
    return [pair.slice(0, at), pair.slice(at + 1)]
  })
if (targets.length === 0) {
  throw new Error("set DURABLE_TARGETS=name=url[,name=url...] (e.g. reference=http://127.0.0.1:4437)")
}
const longPollTimeoutMs = Number(process.env.DURABLE_LONG_POLL_MS ?? 20000)

for (const [name, baseUrl] of targets) {
  describe(name, () => {
    runConformanceTests({ baseUrl, longPollTimeoutMs })
  })
}
