// A console watch with a filter (?event=, ?tag=: docs/concepts/filters.md) on a stream of its own.
//
// The page's shared stream (stream.js) carries every other channel, and the hub applies a
// stream's filter to all of its channels: a filter there would filter the clocks and the job
// too. So a filtered watch opens its own EventSource on /channels/<name>/events?event=…&tag=…
// (one more of the browser's 6 HTTP/1.1 connections per origin). The hub sends only what
// passes, with the usual ids; a dropped connection is the browser's to resume (it reconnects
// with Last-Event-ID, and the hub replays the filtered history after it). When the browser
// gives up (an HTTP error), this asks the hub why: a 4xx says what is wrong with the watch
// (a private channel, a filter the hub refuses) and is shown; anything else is retried with
// back-off from the last id, as stream.js does for the shared stream.
//
// The input is checked here with the hub's rules (hub/filters.py, hub/events.py), so a typo is
// caught before a connection is spent on it.

import { EVENT_TYPE_RE } from "./stream.js";

const TAG_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/; // an event type's characters but ":"
const MAX_FILTER_EVENTS = 32; // event= values, and values of one tag=, at most (hub/filters.py)
const MAX_TAGS = 16; // tag= values at most: events carry no more tags (hub/events.py)
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30000;
const TYPES = "1-64 characters of A-Z a-z 0-9 _ . : -";

/**
 * The filter of the console's two fields (event types; tags as name:value or name:a|b, each
 * separated by spaces or commas): { filter, problem, field } (field: "events" or "tags", the
 * one the problem is in), with filter null when both are empty.
 * A filter is { events, tags, text }; text is its query as people read it
 * ("event=keep&tag=region:eu"), also the watch's key and its form in the page's URL.
 */
export function parseFilter(eventsText, tagsText) {
  const events = eventsText.split(/[\s,]+/).filter(Boolean);
  const tags = tagsText.split(/[\s,]+/).filter(Boolean);
  const problem = checkEvents(events);
  if (problem !== null) return { filter: null, problem, field: "events" };
  const tagProblem = checkTags(tags);
  if (tagProblem !== null) return { filter: null, problem: tagProblem, field: "tags" };
  if (events.length === 0 && tags.length === 0) return { filter: null, problem: null };
  const text = [...events.map((type) => `event=${type}`), ...tags.map((tag) => `tag=${tag}`)].join("&");
  return { filter: { events, tags, text }, problem: null };
}

function checkEvents(events) {
  if (events.length > MAX_FILTER_EVENTS) return `${events.length} event types; at most ${MAX_FILTER_EVENTS}.`;
  for (const type of events) {
    if (!EVENT_TYPE_RE.test(type)) return `Event type "${type}": use ${TYPES}.`;
  }
  return null;
}

function checkTags(tags) {
  if (tags.length > MAX_TAGS) return `${tags.length} tags; at most ${MAX_TAGS} (events have no more).`;
  for (const tag of tags) {
    const colon = tag.indexOf(":");
    const name = tag.slice(0, colon);
    if (colon < 0 || !TAG_NAME_RE.test(name)) {
      return `Tag "${tag}": use name:value or name:value|value; a name is 1-64 characters of A-Z a-z 0-9 _ . -`;
    }
    const values = tag.slice(colon + 1).split("|");
    if (values.length > MAX_FILTER_EVENTS) return `Tag ${name}: ${values.length} values; at most ${MAX_FILTER_EVENTS}.`;
    for (const value of values) {
      if (!EVENT_TYPE_RE.test(value)) return `Tag "${tag}": invalid value "${value}"; use ${TYPES}.`;
    }
  }
  return null;
}

/** "news" or "news?event=keep&tag=region:eu" (a watch in the page's URL): { channel, filter, problem }. */
export function parseWatch(spec) {
  const mark = spec.indexOf("?");
  if (mark < 0) return { channel: spec, filter: null, problem: null };
  const query = new URLSearchParams(spec.slice(mark + 1));
  const unknown = [...query.keys()].find((key) => key !== "event" && key !== "tag");
  if (unknown !== undefined) return { channel: null, filter: null, problem: `A filter has only event= and tag=, not ${unknown}=.` };
  const { filter, problem } = parseFilter(query.getAll("event").join(" "), query.getAll("tag").join(" "));
  return { channel: spec.slice(0, mark), filter, problem };
}

/**
 * One channel through a filter: "event" ({channel, id, event, data, receivedAt}, as stream.js
 * delivers), "reset", "state" ({state}) and "refused" ({status, message}) events.
 */
export class FilteredStream extends EventTarget {
  #channel;
  #filter;
  #types;
  #fromStart;
  #source = null;
  #lastId = null;
  #opened = false;
  #timer = null;
  #retryDelay = RETRY_FIRST_MS;
  #closed = false;

  /** `types`: what to listen for when the filter names none (the console's list). */
  constructor(channel, filter, types, { history = false } = {}) {
    super();
    this.#channel = channel;
    this.#filter = filter;
    // An EventSource delivers only the types it listens for: the filter's own, when it has any.
    this.#types = new Set(filter.events.length > 0 ? [...filter.events, "reset", "close"] : types);
    this.#fromStart = history;
    this.#open();
  }

  get url() { return this.#source === null ? null : this.#source.url; }

  /** A type the console now listens for: a filter of tags only lets it through too. */
  listen(type) {
    if (this.#filter.events.length > 0 || this.#types.has(type)) return;
    this.#types.add(type);
    this.#source?.addEventListener(type, (event) => this.#frame(event));
  }

  close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#source?.close();
  }

  #open() {
    const query = new URLSearchParams();
    for (const type of this.#filter.events) query.append("event", type);
    for (const tag of this.#filter.tags) query.append("tag", tag);
    // A new EventSource sends no Last-Event-ID of its own (the browser's reconnects do).
    if (this.#lastId !== null) query.set("lastEventId", this.#lastId);
    else if (this.#fromStart) query.set("from", "start");
    // A "." or ".." segment would be folded away by the browser's URL parser: /events?channel= then.
    const path = this.#channel.split("/").some((part) => part === "." || part === "..")
      ? `/events?channel=${encodeURIComponent(this.#channel)}&`
      : `/channels/${this.#channel}/events?`;
    const source = new EventSource(`${path}${query}`);
    this.#source = source;
    this.#state(this.#opened ? "reconnecting" : "connecting");
    for (const type of this.#types) source.addEventListener(type, (event) => this.#frame(event));
    // "open" and "error" are also event types a filter may name: a MessageEvent is one of those.
    source.addEventListener("open", (event) => {
      if (event instanceof MessageEvent) this.#frame(event);
      else this.#onOpen();
    });
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent) this.#frame(event);
      else if (source === this.#source) this.#onError();
    });
  }

  #onOpen() {
    this.#opened = true;
    this.#retryDelay = RETRY_FIRST_MS;
    this.#state("open");
  }

  #onError() {
    if (this.#source.readyState !== EventSource.CLOSED) {
      this.#state("reconnecting"); // the browser retries by itself, with Last-Event-ID
      return;
    }
    this.#why(this.#source.url);
  }

  /** The browser gave up after an HTTP error, whose body it does not show: ask for it. */
  async #why(url) {
    const controller = new AbortController();
    let status = 0;
    let message = "";
    try {
      const response = await fetch(url, { signal: controller.signal, headers: { Accept: "text/event-stream" } });
      status = response.status;
      if (status >= 400) message = (await response.json()).error;
    } catch {
      // unreachable, or a body that is not the hub's JSON error: retried below
    } finally {
      controller.abort(); // a 200 is a stream: not for this request to read
    }
    if (this.#closed) return;
    if (status >= 400 && status < 500 && message) {
      this.#state("refused");
      this.dispatchEvent(new CustomEvent("refused", { detail: { status, message } }));
      return;
    }
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(delay * 2, RETRY_MAX_MS);
    this.#state("reconnecting");
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  #state(state) {
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }

  #frame(event) {
    const receivedAt = new Date();
    if (event.type === "reset") {
      let detail = { reason: "unknown", oldest_id: null };
      try {
        detail = { ...detail, ...JSON.parse(event.data) };
      } catch {
        // the defaults: a reset is shown the same whatever it says
      }
      this.dispatchEvent(new CustomEvent("reset", { detail: { ...detail, receivedAt } }));
      return;
    }
    // A clock's ticks and a close frame carry no id; every other frame of the hub does.
    const id = event.type === "close" || this.#channel.startsWith("time/") ? null : event.lastEventId;
    if (id !== null) this.#lastId = id;
    const message = { channel: this.#channel, id, event: event.type, data: event.data, receivedAt };
    this.dispatchEvent(new CustomEvent("event", { detail: message }));
  }
}
