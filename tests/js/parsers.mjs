// Two independent SSE parsers for tests/wire/test_wire_property.py, driven over stdin/stdout.
//
// One JSON request per input line, one JSON answer per output line, so a single Node process
// serves every example of a test run (starting Node per example would cost ~50 ms each).
//   {"op": "parse", "chunks": ["<base64>", ...]}
//       npm's eventsource-parser fed the hub's bytes chunk by chunk (decoded with a streaming
//       TextDecoder, as its own EventSourceParserStream does)
//   {"op": "eventsource", "url": "...", "count": N, "types": ["progress", ...], "timeout_ms": T}
//       undici's EventSource (the WHATWG implementation Node ships) on a live URL, until N
//       messages arrived (listening to "message" and each of `types`) or T ms passed
// Each answer: {"messages": [{"type", "data", "id"}], "error": null | "..."}.
import { createInterface } from "node:readline";
import { createParser } from "eventsource-parser";
import { EventSource } from "undici";

function parse(chunks) {
  const messages = [];
  const parser = createParser({
    onEvent(event) {
      messages.push({ type: event.event ?? "message", data: event.data, id: event.id ?? null });
    },
  });
  const decoder = new TextDecoder("utf-8");
  for (const chunk of chunks) {
    parser.feed(decoder.decode(Buffer.from(chunk, "base64"), { stream: true }));
  }
  parser.feed(decoder.decode());
  return { messages, error: null };
}

function eventsource({ url, count, types, timeout_ms }) {
  return new Promise((resolve) => {
    const messages = [];
    const source = new EventSource(url);
    let done = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      source.close();
      resolve({ messages, error });
    };
    const timer = setTimeout(() => finish(`timed out after ${messages.length} of ${count}`), timeout_ms);
    const take = (event) => {
      messages.push({ type: event.type, data: event.data, id: event.lastEventId });
      if (messages.length >= count) finish(null);
    };
    for (const type of new Set(["message", ...types])) source.addEventListener(type, take);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) finish("the EventSource closed");
    };
    if (count === 0) finish(null);
  });
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const request = JSON.parse(line);
  let answer;
  try {
    answer = request.op === "parse" ? parse(request.chunks) : await eventsource(request);
  } catch (error) {
    answer = { messages: [], error: String(error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
