// Resumes one chat the way the AI SDK's useChat({resume: true}) does, with the `ai` package's own
// DefaultChatTransport.reconnectToStream({chatId}): GET {api}/{chatId}/stream. Prints what the
// transport yields, one JSON line each, then one summary line:
//   {"chunk": <UI message chunk>}            per chunk, as the transport parsed it
//   {"end": "done" | "aborted" | "no-stream" | "error", "chunks": N, "status": S,
//    "message": <the UIMessage readUIMessageStream builds from those chunks> | null,
//    "text": <its text parts joined> | null, "error": "<message>" (only on "error")}
// "no-stream" is the transport's null (a 204). "aborted" means we aborted after N chunks, as a
// closed tab or a lost network would, mid-answer.
//   node ai-resume.mjs --api http://127.0.0.1:8080/ai/chat --chat 42 [--abort-after N]
//                      [--header "Authorization: Bearer ..."]...
// The exit code is 0 whatever the end (the test reads the summary); 2 for bad arguments.
import { DefaultChatTransport, readUIMessageStream } from "ai"

function parse(argv) {
  const options = { api: null, chat: null, abortAfter: null, headers: {} }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]]
    if (value === undefined) usage(`${flag} needs a value`)
    if (flag === "--api") options.api = value
    else if (flag === "--chat") options.chat = value
    else if (flag === "--abort-after") {
      options.abortAfter = Number(value)
      if (!Number.isInteger(options.abortAfter) || options.abortAfter < 0) usage("--abort-after N, N >= 0")
    } else if (flag === "--header") {
      const colon = value.indexOf(":")
      if (colon <= 0) usage(`--header "Name: value", got ${value}`)
      options.headers[value.slice(0, colon).trim()] = value.slice(colon + 1).trim()
    } else usage(`unknown argument ${flag}`)
  }
  if (!options.api || options.chat === null) usage("--api and --chat are required")
  return options
}

function usage(why) {
  process.stderr.write(`ai-resume.mjs: ${why}\n`)
  process.exit(2)
}

const print = (value) => process.stdout.write(JSON.stringify(value) + "\n")

/** What useChat would show for these chunks: the last snapshot of readUIMessageStream. */
async function assemble(chunks) {
  if (chunks.length === 0) return null
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk)
      controller.close()
    },
  })
  let message = null
  for await (const snapshot of readUIMessageStream({ stream })) message = snapshot
  return message
}

const options = parse(process.argv.slice(2))
let status = null
const transport = new DefaultChatTransport({
  api: options.api,
  headers: options.headers,
  // the same fetch, watched: the summary says which status the transport saw
  fetch: async (...args) => {
    const response = await fetch(...args)
    status = response.status
    return response
  },
})
const abort = new AbortController()
const chunks = []
let end = "done"
let error
try {
  const stream = await transport.reconnectToStream({ chatId: options.chat, abortSignal: abort.signal })
  if (stream === null) end = "no-stream"
  else {
    const reader = stream.getReader()
    while (options.abortAfter === null || chunks.length < options.abortAfter) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      print({ chunk: value })
    }
    if (options.abortAfter !== null && chunks.length >= options.abortAfter) {
      end = "aborted"
      abort.abort()
      await reader.cancel().catch(() => {})
    }
  }
} catch (caught) {
  end = "error"
  error = caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)
}
const message = await assemble(chunks)
const text = message
  ? message.parts.filter((part) => part.type === "text").map((part) => part.text).join("")
  : null
print({ end, chunks: chunks.length, status, message, text, ...(error === undefined ? {} : { error }) })
