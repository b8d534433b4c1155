// The Durable Streams reference server (@durable-streams/server), in memory, on 127.0.0.1 and a
// free port: the yardstick the hub's /v1/stream is measured against (tests/test_durable_conformance.py).
// Prints one line `listening on http://127.0.0.1:<port>` when it serves; stops on SIGTERM/SIGINT.
//   node reference-server.mjs [--long-poll-ms N]
import { DurableStreamTestServer } from "@durable-streams/server"

const flag = process.argv.indexOf("--long-poll-ms")
// 500 ms, as the upstream repository runs its own conformance test (packages/server/test/
// conformance.test.ts): the suite waits at most 21 s for a long-poll, the server's default is 30 s.
const longPollTimeout = flag >= 0 ? Number(process.argv[flag + 1]) : 500

// No dataDir: in-memory storage, nothing on disk. No webhooks: they would call out.
const server = new DurableStreamTestServer({ host: "127.0.0.1", port: 0, longPollTimeout })
const url = await server.start()
process.stdout.write(`listening on ${url}\n`)

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  await server.stop()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
