// One EventSource for the whole page, on every channel the page watches.
//
// Browsers allow 6 HTTP/1.1 connections per origin (across all tabs), so clocks, the job and the
// console all share one stream: /events?channel=a&channel=b. Changing the channel set needs a new
// EventSource; this module makes that change lose nothing and repeat nothing:
//
// - make before break: the new stream opens while the old one keeps delivering, and the old one
//   is closed only once the hub has registered the new one (its `open` event);
// - the new stream resumes with ?lastEventId= (a new EventSource sends no Last-Event-ID of its
//   own), or asks for replay=<channel> when a channel was added whose history is wanted (a job):
//   the hub replays that channel's history only, and the others start live; the old stream
//   then stays open a moment longer (RETIRE_MS), so that what it was delivering while the new
//   one registered still arrives (the positions skip what both deliver);
// - ids are "<position>:<channel>" with positions comparable across channels, so every watcher
//   remembers the newest position it got and skips anything not newer: the overlap between the
//   old and new stream, and a history replay, reach each watcher exactly once.
//
// When the connection drops, the browser reconnects by itself with Last-Event-ID and the hub
// replays what was missed. If the hub no longer knows that id (restarted with in-memory history),
// it sends `event: reset` then all it still retains; after an "unknown-id" reset old positions
// mean nothing, so the watchers start afresh.
//
// Clock ticks carry no id (they are not kept in history). A frame's own id cannot be read from
// the MessageEvent (lastEventId persists over frames without one), so a frame is taken to carry
// an id when lastEventId changed: ids on a stream strictly increase, so a repeat means none.
// That alone is not enough: a frame of a type the page does not listen for (a service's
// `event: x`) moves lastEventId unseen, and the next tick would then look like an event with
// that id. So a tick is known by its own data first: an UPDATE (or a clock's `offset` notice at a
// DST change) naming a clock channel of that connection (time/..., which only the hub's ticker
// writes) is a tick, whatever lastEventId says; one naming a clock it did not ask for is an
// event of its own channel (data may say anything). A tick names its
// channel in its data, so it reaches that channel's watchers and no others (two clocks of one
// time zone at different intervals are two channels).

const ID_RE = /^(\d{1,19}):(.+)$/s;
export const CHANNEL_RE = /^[A-Za-z0-9_\-.:@/]{1,200}$/;
export const EVENT_TYPE_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
// Event types the page listens for from the start; "open" and "error" are handled apart because
// EventSource uses those names for its own connection events.
// "close": the hub deleted a channel (no id; its data names the channel, as a tick's does).
const BASE_TYPES = ["message", "UPDATE", "started", "progress", "done", "failed", "reset", "close"];
const RETRY_FIRST_MS = 1000;
const START = "start"; // a connection's progress before its replay (replay=...) delivered anything
const RETRY_MAX_MS = 30000;
const RETIRE_MS = 1000; // how long an old stream keeps delivering after a replay= stream opened

/**
 * A clock's frame: a tick (UPDATE) or a DST notice (offset, when the console listens for it),
 * with data naming a clock channel (the hub refuses publishes there) that the connection asked
 * for (`names`): the hub sends no tick of another. Any channel's event may carry such data (a
 * dashboard relaying a clock): it is that channel's event, with its id, unless it names a
 * clock of this very connection, which a frame cannot tell from a tick after an unseen event.
 */
function isTick(event, names) {
  if ((event.type !== "UPDATE" && event.type !== "offset") || !event.data.startsWith("{")) return false;
  try {
    const channel = JSON.parse(event.data).channel;
    return typeof channel === "string" && channel.startsWith("time/") && names.has(channel);
  } catch {
    return false;
  }
}

/** The position and channel of a hub event id, or null for anything else. */
export function parseId(id) {
  const match = ID_RE.exec(id);
  return match ? { position: BigInt(match[1]), channel: match[2] } : null;
}

export class HubStream extends EventTarget {
  #base;
  #channels = new Map(); // name -> { watchers: Set, needsStart: boolean }
  #types = new Set(BASE_TYPES);
  #current = null; // the connection the page relies on
  #next = null; // a connection opening for a new channel set (make before break)
  #retiring = new Set(); // old connections still delivering for a moment (see RETIRE_MS)
  #lastId = null; // the newest id received (shown; new live watchers start after it)
  #lastPosition = -1n;
  #state = "idle";
  #lostAt = null;
  #retryTimer = null;
  #retryDelay = RETRY_FIRST_MS;
  #scheduled = false;

  constructor(base = "") {
    super();
    this.#base = base;
  }

  get state() { return this.#state; }
  get url() { return this.#current ? this.#current.url : null; }
  get lastEventId() { return this.#lastId; }
  get channels() { return [...this.#channels.keys()]; }
  get types() { return [...this.#types]; }

  /**
   * Deliver the events of `channel` to `handler` ({channel, id, event, data, receivedAt}).
   * With `history`, every event the hub retains for it comes first. Returns an unwatch function.
   */
  watch(channel, handler, { history = false } = {}) {
    if (!CHANNEL_RE.test(channel)) throw new Error(`invalid channel name ${channel}`);
    let entry = this.#channels.get(channel);
    if (entry === undefined) {
      entry = { watchers: new Set(), needsStart: false };
      this.#channels.set(channel, entry);
      this.#schedule();
    }
    // A live watcher wants what comes after the newest event the page has seen; a history
    // watcher wants everything retained (and needs a from=start connection to get it).
    const watcher = { handler, seen: history ? -1n : this.#lastPosition, lastTick: null };
    entry.watchers.add(watcher);
    if (history && !entry.needsStart) {
      entry.needsStart = true;
      this.#schedule();
    }
    return () => this.#unwatch(channel, watcher);
  }

  #unwatch(channel, watcher) {
    const entry = this.#channels.get(channel);
    if (entry === undefined || !entry.watchers.delete(watcher)) return;
    if (entry.watchers.size === 0) {
      this.#channels.delete(channel);
      this.#schedule();
    }
  }

  /** Also deliver events of this type (EventSource has no "any type" listener). */
  listen(type) {
    if (!EVENT_TYPE_RE.test(type) || type === "open" || type === "error") {
      throw new Error(`cannot listen for event type ${type}`);
    }
    if (this.#types.has(type)) return;
    this.#types.add(type);
    for (const connection of [this.#current, this.#next]) {
      if (connection !== null) connection.source.addEventListener(type, connection.onFrame);
    }
    this.dispatchEvent(new CustomEvent("types", { detail: { types: this.types } }));
  }

  // -- connecting ------------------------------------------------------------------------------

  #schedule() {
    // Several changes in one go (three default clocks) make one connection, not three.
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#connect());
  }

  #connect() {
    this.#scheduled = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    if (this.#next !== null) this.#close(this.#next);
    this.#next = null;
    const names = [...this.#channels.keys()];
    if (names.length === 0) {
      if (this.#current !== null) this.#close(this.#current);
      this.#current = null;
      this.#lostAt = null;
      this.#setState("idle");
      return;
    }
    const wanted = names.filter((name) => this.#channels.get(name).needsStart);
    const key = [...names].sort().join(" ");
    const current = this.#current;
    if (current !== null && current.key === key && wanted.length === 0
        && current.source.readyState !== EventSource.CLOSED) {
      return; // the same channels again (a change undone before it took effect)
    }
    // A new stream that takes over from one whose replay delivered nothing yet replays its
    // channels again.
    const progress = current === null ? null : current.progress;
    const replayAgain = progress === START ? current.fromStart : [];
    const fromStart = names.filter((name) => wanted.includes(name) || replayAgain.includes(name));
    const query = new URLSearchParams();
    for (const name of names) query.append("channel", name);
    // Resume where the trusted connection got to: everything up to its progress was delivered
    // on all of its channels (a stream delivers in position order). A channel whose history is
    // wanted and not yet asked for needs replay=<channel>: a Last-Event-ID would take precedence
    // and skip its past. What a replay repeats is skipped by the watchers' positions.
    if (fromStart.length > 0) {
      for (const name of fromStart) query.append("replay", name);
    } else if (progress !== null && progress !== START) {
      query.set("lastEventId", progress);
    }
    const connection = this.#open(`${this.#base}/events?${query}`, fromStart);
    connection.progress = fromStart.length > 0 ? START : progress;
    connection.key = key;
    connection.names = new Set(names);
    if (this.#current !== null && this.#current.source.readyState === EventSource.OPEN) {
      this.#next = connection;
    } else {
      if (this.#current !== null) this.#close(this.#current);
      this.#current = connection;
      this.#setState(this.#lostAt === null ? "connecting" : "reconnecting");
    }
  }

  #open(url, fromStart) {
    const source = new EventSource(url);
    const connection = {
      source, url, fromStart, key: "", names: new Set(), progress: null, previousId: "",
      opened: false, onFrame: null,
    };
    connection.onFrame = (event) => this.#frame(connection, event);
    for (const type of this.#types) source.addEventListener(type, connection.onFrame);
    source.addEventListener("open", (event) => {
      if (event instanceof MessageEvent) this.#frame(connection, event);
      else this.#opened(connection);
    });
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent) this.#frame(connection, event);
      else this.#failed(connection);
    });
    return connection;
  }

  #close(connection) {
    connection.source.close();
  }

  #retire(connection) {
    this.#retiring.add(connection);
    setTimeout(() => {
      this.#retiring.delete(connection);
      this.#close(connection);
    }, RETIRE_MS);
  }

  #opened(connection) {
    connection.opened = true;
    if (connection === this.#next) {
      if (this.#current !== null && connection.fromStart.length > 0) this.#retire(this.#current);
      else if (this.#current !== null) this.#close(this.#current);
      this.#current = connection;
      this.#next = null;
    }
    if (connection !== this.#current) return;
    // This stream now carries those channels' history: later ones resume from its progress.
    for (const name of connection.fromStart) {
      const entry = this.#channels.get(name);
      if (entry !== undefined) entry.needsStart = false;
    }
    const downFor = this.#lostAt === null ? null : Date.now() - this.#lostAt;
    this.#lostAt = null;
    this.#retryDelay = RETRY_FIRST_MS;
    this.#setState("open", { downFor });
  }

  #failed(connection) {
    const closed = connection.source.readyState === EventSource.CLOSED;
    if (connection === this.#next) {
      // The old stream still works; a new one the hub refused (HTTP error) is given up.
      if (closed) {
        this.#next = null;
        this.dispatchEvent(new CustomEvent("refused", { detail: { url: connection.url } }));
      }
      return;
    }
    if (connection !== this.#current) return;
    if (this.#lostAt === null) this.#lostAt = Date.now();
    if (closed) {
      // The browser gives up after an HTTP error; the page does not: retry with back-off,
      // resuming from the last id like the browser would.
      if (!connection.opened) {
        this.dispatchEvent(new CustomEvent("refused", { detail: { url: connection.url } }));
      }
      const delay = this.#retryDelay;
      this.#retryDelay = Math.min(this.#retryDelay * 2, RETRY_MAX_MS);
      this.#retryTimer = setTimeout(() => this.#connect(), delay);
      this.#setState("reconnecting", { retryIn: delay });
    } else {
      this.#setState("reconnecting");
    }
  }

  #setState(state, extra = {}) {
    const changed = state !== this.#state;
    this.#state = state;
    const detail = { state, changed, url: this.url, lastEventId: this.#lastId, ...extra };
    this.dispatchEvent(new CustomEvent("state", { detail }));
  }

  // -- frames ----------------------------------------------------------------------------------

  #frame(connection, event) {
    if (connection !== this.#current && connection !== this.#next
        && !this.#retiring.has(connection)) return;
    const hasId = event.lastEventId !== connection.previousId && !isTick(event, connection.names);
    connection.previousId = event.lastEventId;
    const receivedAt = new Date();
    if (!hasId) {
      if (event.type === "reset") this.#reset(connection, event.data);
      else this.#tick(event, receivedAt);
      return;
    }
    const parsed = parseId(event.lastEventId);
    if (parsed === null) return; // not a hub id: nothing can be resumed from it
    const { position, channel } = parsed;
    if (!this.#retiring.has(connection)) connection.progress = event.lastEventId;
    if (position > this.#lastPosition) {
      this.#lastPosition = position;
      this.#lastId = event.lastEventId;
      this.dispatchEvent(new CustomEvent("lastid", { detail: { lastEventId: this.#lastId } }));
    }
    const entry = this.#channels.get(channel);
    if (entry === undefined) return;
    const message = { channel, id: event.lastEventId, event: event.type, data: event.data, receivedAt };
    for (const watcher of entry.watchers) {
      if (position > watcher.seen) {
        watcher.seen = position;
        this.#deliver(watcher, message);
      }
    }
  }

  #tick(event, receivedAt) {
    let channel = null;
    try {
      channel = JSON.parse(event.data).channel;
    } catch {
      return; // the hub sends no other frames without an id
    }
    const entry = typeof channel === "string" ? this.#channels.get(channel) : undefined;
    if (entry === undefined) return; // a channel no longer watched (the old stream's last ticks)
    const message = { channel, id: null, event: event.type, data: event.data, receivedAt };
    for (const watcher of entry.watchers) {
      if (watcher.lastTick === event.data) continue; // the same tick from both streams
      watcher.lastTick = event.data;
      this.#deliver(watcher, message);
    }
  }

  #reset(connection, data) {
    let detail = { reason: "unknown", oldest_id: null };
    try {
      detail = { ...detail, ...JSON.parse(data) };
    } catch {
      // keep the defaults: a reset is handled the same whatever it says
    }
    if (detail.reason === "unknown-id") {
      // Positions from before (a restarted hub) say nothing about the ones to come.
      this.#lastPosition = -1n;
      this.#lastId = null;
      connection.progress = START; // what follows is all the hub retains: the same as a start
      connection.fromStart = connection.key.split(" "); // so a next stream replays them all
      for (const entry of this.#channels.values()) {
        for (const watcher of entry.watchers) watcher.seen = -1n;
      }
    }
    this.dispatchEvent(new CustomEvent("reset", { detail: { ...detail, receivedAt: new Date() } }));
  }

  #deliver(watcher, message) {
    try {
      watcher.handler(message);
    } catch (problem) {
      // One broken view must not stop the others; report it without a console error.
      this.dispatchEvent(new CustomEvent("handler-error", { detail: { problem, message } }));
    }
  }
}
