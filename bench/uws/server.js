'use strict';
// uWebSockets.js SSE fan-out peer for `python -m bench.run` (target `uws`).
//
// What a fast event-loop server in C++ with a JS handler layer does with the hub's
// API subset the bench uses: GET /channels/<name>/events (SSE), POST
// /channels/<name>/events {"event","data"}, POST /publish [{"channel","event","data"}],
// GET /healthz; anything else is a 404 (so POST /publish/stream says "not here").
// Frames are built once per event and written once per subscriber per loop pass:
// what was published since the last pass goes out in one write per subscriber of
// each channel, like the hub. The writes run in setImmediate, outside the
// publisher's callback: uWS corks one socket at a time, and while the publisher's
// is corked a subscriber's write is not (measured: 4 sendto per event instead of 1).
// No history, no ids to resume from: a reference for the fan-out path only.
//
//   node bench/uws/server.js <port>        (listens on 127.0.0.1 only)
//
// The native binary is loaded directly: the package falls back to a pure-JS
// implementation when the binary does not load, and that must not be measured.
const path = require('path');

const pkg = path.dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json'));
const binary = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
const uWS = require(path.join(pkg, 'binaries', binary));

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.js <port>');
  process.exit(2);
}

const MAX_BODY = 16 << 20; // bytes of one publish request
const MAX_STALLED = 1 << 20; // bytes a subscriber may fall behind before it is cut off
const channels = new Map(); // name -> Set of live responses
let position = 0;

function channelOf(url) {
  // "/channels/<name>/events" -> name, or null
  if (!url.startsWith('/channels/') || !url.endsWith('/events')) return null;
  const name = url.slice('/channels/'.length, -'/events'.length);
  return name.length ? name : null;
}

function send(res, text) {
  // uWS buffers what the socket does not take; bound it like the hub's
  // max_pending_bytes and drop a reader that stays behind.
  let ok = true;
  res.cork(() => {
    ok = res.write(text);
  });
  if (ok) return;
  res.stalled += text.length;
  if (res.stalled > MAX_STALLED) {
    res.close();
    return;
  }
  if (!res.waiting) {
    res.waiting = true;
    res.onWritable(() => {
      res.stalled = 0;
      res.waiting = false;
      return true;
    });
  }
}

let pending = new Map(); // channel -> frames published since the last pass
let scheduled = false;

function flush() {
  const texts = pending;
  pending = new Map();
  scheduled = false;
  for (const [channel, text] of texts) {
    const subs = channels.get(channel);
    if (subs) for (const res of subs) send(res, text);
  }
}

function fanOut(items) {
  // items: [{channel, event, data}]; their ids, in order.
  const ids = [];
  for (const { channel, event, data } of items) {
    position += 1;
    const id = `${position}:${channel}`;
    ids.push(id);
    const frame = `id: ${id}\nevent: ${event || 'message'}\ndata: ${JSON.stringify(data)}\n\n`;
    pending.set(channel, (pending.get(channel) || '') + frame);
  }
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
  return ids;
}

function answer(res, status, body) {
  if (res.aborted) return;
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'application/json').end(body);
  });
}

function readJson(res, handle) {
  // Collect the body (uWS hands out chunks that are only valid during the call).
  const parts = [];
  let size = 0;
  let rejected = false;
  res.aborted = false;
  res.onAborted(() => {
    res.aborted = true;
  });
  res.onData((chunk, isLast) => {
    if (rejected) return;
    size += chunk.byteLength;
    if (size > MAX_BODY) {
      rejected = true;
      parts.length = 0;
      answer(res, '413 Payload Too Large', '{"error":"body too large"}');
      return;
    }
    parts.push(Buffer.from(chunk.slice(0)));
    if (!isLast) return;
    let value;
    try {
      value = JSON.parse(Buffer.concat(parts).toString());
    } catch (err) {
      answer(res, '400 Bad Request', JSON.stringify({ error: `invalid JSON: ${err.message}` }));
      return;
    }
    handle(value);
  });
}

const app = uWS.App();

app.get('/healthz', (res) => {
  res.writeHeader('Content-Type', 'application/json').end('{"status":"ok"}');
});

app.get('/channels/*', (res, req) => {
  const name = channelOf(req.getUrl());
  if (name === null) {
    res.writeStatus('404 Not Found').end('{"error":"not found"}');
    return;
  }
  res.stalled = 0;
  res.waiting = false;
  let subs = channels.get(name);
  if (!subs) channels.set(name, (subs = new Set()));
  subs.add(res);
  res.onAborted(() => {
    subs.delete(res);
    if (!subs.size && channels.get(name) === subs) channels.delete(name);
  });
  res.writeStatus('200 OK');
  res.writeHeader('Content-Type', 'text/event-stream');
  res.writeHeader('Cache-Control', 'no-cache');
  res.write('retry: 2000\n\n'); // sends the head now, as the hub does
});

app.post('/channels/*', (res, req) => {
  const name = channelOf(req.getUrl());
  if (name === null) {
    res.writeStatus('404 Not Found').end('{"error":"not found"}');
    return;
  }
  readJson(res, (body) => {
    if (body === null || typeof body !== 'object' || !('data' in body)) {
      answer(res, '400 Bad Request', '{"error":"expected {\\"event\\", \\"data\\"}"}');
      return;
    }
    const [id] = fanOut([{ channel: name, event: body.event, data: body.data }]);
    answer(res, '200 OK', JSON.stringify({ id }));
  });
});

app.post('/publish', (res) => {
  readJson(res, (items) => {
    if (!Array.isArray(items) || items.some((i) => !i || typeof i.channel !== 'string')) {
      answer(res, '400 Bad Request', '{"error":"expected [{\\"channel\\", \\"event\\", \\"data\\"}]"}');
      return;
    }
    answer(res, '200 OK', JSON.stringify({ ids: fanOut(items) }));
  });
});

app.any('/*', (res) => {
  res.writeStatus('404 Not Found').writeHeader('Content-Type', 'application/json');
  res.end('{"error":"not found"}');
});

app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`cannot listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
  console.log(`uws listening on 127.0.0.1:${port}`);
});

process.on('SIGTERM', () => process.exit(0));
