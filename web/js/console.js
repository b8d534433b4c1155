// The channel console: raw events of any channel, the connection's life, and who is subscribed.
//
// Watched channels ride on the page's one connection like everything else; a watch with a
// filter (?event=, ?tag=) has a stream of its own (filter.js). The subscriber
// table comes from GET /channels and GET /healthz, fetched only while the stream is open and the
// page is visible: polling a hub that is away would only add failed requests.

import { byId, clockTime, h, say } from "./dom.js";
import { FilteredStream, parseFilter, parseWatch } from "./filter.js";
import { CHANNEL_RE, EVENT_TYPE_RE } from "./stream.js";

const MAX_ROWS = 200;
const MAX_LOG = 30;
const MAX_DATA_CHARS = 2000;
const MAX_CHANNEL_ROWS = 40;
const REFRESH_MS = 5000;
/** What presence/<channel> carries (docs/concepts/presence.md). */
const PRESENCE_TYPES = ["join", "leave"];

const STATE_TEXT = {
  idle: "idle (no channels)",
  connecting: "connecting",
  open: "open",
  reconnecting: "reconnecting",
};

/** A URL as people read it: /events?channel=time/Europe/London/1&… rather than %2F. */
function readable(url) {
  try {
    return decodeURIComponent(url);
  } catch {
    return url;
  }
}

export class ChannelConsole extends EventTarget {
  #stream;
  #watched = new Map(); // "news" or "news?event=keep" -> { channel, filtered, unwatch, element }
  #rows = byId("console-events").tBodies[0];
  #error = byId("console-error");
  #timer = null;

  constructor(stream) {
    super();
    this.#stream = stream;
    stream.addEventListener("lastid", ({ detail }) => {
      byId("conn-last-id").textContent = detail.lastEventId;
    });
    for (const origin of document.querySelectorAll(".origin")) origin.textContent = location.origin;
    byId("console-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId("console-channel");
      const fields = [byId("console-filter-events"), byId("console-filter-tags")];
      const { filter, problem: bad, field } = parseFilter(fields[0].value, fields[1].value);
      const channel = input.value.trim();
      const problem = bad ?? this.watch(filter === null ? channel : `${channel}?${filter.text}`,
        byId("console-history").checked);
      say(this.#error, problem);
      if (problem === null) for (const box of [input, ...fields]) box.value = "";
      else (bad === null ? input : fields[field === "tags" ? 1 : 0]).focus();
    });
    byId("type-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId("console-type");
      const type = input.value.trim();
      if (!EVENT_TYPE_RE.test(type) || type === "open" || type === "error") {
        say(this.#error, "Event types are 1-64 characters of A-Z a-z 0-9 _ . : - (not open or error).");
        return;
      }
      say(this.#error, null);
      stream.listen(type);
      input.value = "";
    });
    byId("events-clear").addEventListener("click", () => {
      this.#rows.replaceChildren();
      byId("events-empty").hidden = false;
    });
    byId("channels-refresh").addEventListener("click", () => this.refresh());
    stream.addEventListener("types", () => {
      this.#showTypes();
      for (const { filtered } of this.#watched.values()) {
        for (const type of stream.types) filtered?.listen(type);
      }
    });
    stream.addEventListener("state", (event) => this.#onState(event.detail));
    stream.addEventListener("reset", (event) => this.#onReset(event.detail));
    stream.addEventListener("refused", (event) => this.#log(
      `The hub refused ${event.detail.url} (an HTTP error). Check the channel names.`, "warn"));
    stream.addEventListener("handler-error", (event) => this.#log(
      `a view failed on an event of ${event.detail.message.channel}: ${event.detail.problem}`, "warn"));
    document.addEventListener("visibilitychange", () => this.#schedule());
    this.#showTypes();
  }

  /** The watches: "news", or "news?event=keep&tag=region:eu" for one with a filter. */
  get channels() { return [...this.#watched.keys()]; }

  /**
   * Show the raw events of a channel, of those its filter lets through when the watch has one
   * ("news?event=keep&tag=region:eu"), with its retained history first; error text or null.
   */
  watch(spec, history = false) {
    const { channel, filter, problem } = parseWatch(spec);
    if (problem !== null) return problem;
    if (!CHANNEL_RE.test(channel)) {
      return "Channel names are 1-200 characters of A-Z a-z 0-9 _ - . : @ /";
    }
    const key = filter === null ? channel : `${channel}?${filter.text}`;
    if (this.#watched.has(key)) return null;
    // A presence channel's events are typed: an EventSource delivers only the types it listens for.
    if (channel.startsWith("presence/")) for (const type of PRESENCE_TYPES) this.#stream.listen(type);
    const element = h("li", { dataset: filter === null ? { channel } : { channel, filter: filter.text } },
      h("code", {}, channel),
      filter === null ? null : h("code", { class: "filter" }, filter.text),
      h("button", {
        type: "button", class: "remove", "aria-label": `Stop watching ${key}`,
        onclick: () => { this.unwatch(key); byId("console-channel").focus(); },
      }, "×"));
    let filtered = null;
    let unwatch;
    if (filter === null) {
      unwatch = this.#stream.watch(channel, (message) => this.#row(message), { history });
    } else {
      filtered = this.#filtered(channel, filter, element, history);
      unwatch = () => filtered.close();
    }
    byId("console-channels").append(element);
    this.#watched.set(key, { channel, filtered, unwatch, element });
    this.#log(`watching ${channel}${filter === null ? "" : ` through ${filter.text} (a stream of its own)`}`
      + `${history ? " (with its history)" : ""}`);
    this.dispatchEvent(new Event("change"));
    return null;
  }

  #filtered(channel, filter, element, history) {
    const filtered = new FilteredStream(channel, filter, this.#stream.types, { history });
    const label = `${channel} (${filter.text})`;
    filtered.addEventListener("event", ({ detail }) => this.#row(detail, filter.text));
    filtered.addEventListener("reset", ({ detail }) => this.#onReset(detail, label));
    filtered.addEventListener("state", ({ detail }) => {
      element.dataset.state = detail.state;
      element.title = `${detail.state}: ${readable(filtered.url ?? "")}`;
    });
    filtered.addEventListener("refused", ({ detail }) => {
      const text = `The hub refused ${label} (HTTP ${detail.status}): ${detail.message}`;
      say(this.#error, text);
      this.#log(text, "warn");
    });
    return filtered;
  }

  unwatch(key) {
    const watched = this.#watched.get(key);
    if (watched === undefined) return;
    watched.unwatch();
    watched.element.remove();
    this.#watched.delete(key);
    this.#log(`stopped watching ${key}`);
    this.dispatchEvent(new Event("change"));
  }

  #row(message, filter = null) {
    let data = message.data;
    if (data.length > MAX_DATA_CHARS) data = `${data.slice(0, MAX_DATA_CHARS)}… (${message.data.length} characters)`;
    const dataset = { channel: message.channel, event: message.event, id: message.id ?? "" };
    if (filter !== null) dataset.filter = filter;
    const row = h("tr", { dataset },
      h("td", { class: "num" }, h("time", { datetime: message.receivedAt.toISOString() }, clockTime(message.receivedAt))),
      h("td", {}, message.channel, filter === null ? null : h("code", { class: "filter" }, filter)),
      h("td", {}, message.id === null ? h("span", { title: "clock ticks are not kept, so they have no id" }, "–") : message.id),
      h("td", {}, message.event),
      h("td", { class: "data" }, data));
    this.#prepend(row);
  }

  #prepend(row) {
    this.#rows.prepend(row);
    while (this.#rows.rows.length > MAX_ROWS) this.#rows.lastElementChild.remove();
    byId("events-empty").hidden = true;
  }

  #onReset(detail, channel = "(all)") {
    const why = detail.reason === "unknown-id"
      ? "the hub does not know where this page left off (it restarted, or its history was wiped)"
      : "the hub's history no longer reaches back to where this page left off";
    this.#log(`reset: ${why}; it sent everything it still retains. Events from the gap may be missing.`, "warn");
    this.#prepend(h("tr", { dataset: { kind: "reset", event: "reset" } },
      h("td", { class: "num" }, clockTime(detail.receivedAt)),
      h("td", {}, channel),
      h("td", {}, "–"),
      h("td", {}, "reset"),
      h("td", { class: "data" }, JSON.stringify({ reason: detail.reason, oldest_id: detail.oldest_id }))));
  }

  #onState(detail) {
    byId("conn-state").textContent = STATE_TEXT[detail.state] ?? detail.state;
    byId("conn-url").textContent = detail.url === null ? "–" : readable(detail.url);
    byId("conn-last-id").textContent = detail.lastEventId ?? "–";
    if (detail.state === "open") {
      if (detail.downFor !== null && detail.downFor !== undefined) {
        this.#log(`back after ${(detail.downFor / 1000).toFixed(1)} s; the hub sends what was published meanwhile`, "ok");
      } else if (detail.changed) {
        this.#log("open");
      } else {
        this.#log("switched to the new channel set");
      }
    } else if (detail.state === "connecting") {
      this.#log(`connecting: ${readable(detail.url)}`);
    } else if (detail.state === "reconnecting" && detail.changed) {
      const resume = detail.lastEventId ? ` (it resumes after ${detail.lastEventId})` : "";
      this.#log(`connection lost; reconnecting${resume}`, "warn");
    }
    this.#schedule();
  }

  #log(text, kind = "info") {
    const log = byId("conn-log");
    const now = new Date();
    log.prepend(h("li", { dataset: { kind } }, h("time", { datetime: now.toISOString() }, clockTime(now)), ` ${text}`));
    while (log.children.length > MAX_LOG) log.lastElementChild.remove();
  }

  #showTypes() {
    byId("type-list").replaceChildren(...this.#stream.types.flatMap((type, index) => [
      index ? ", " : "", h("code", {}, type),
    ]));
  }

  #schedule() {
    clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#stream.state !== "open" || document.visibilityState !== "visible") return;
    this.#timer = setTimeout(() => this.refresh(), 300); // soon after (re)connecting
  }

  /** Subscriber counts: GET /channels (per channel) and GET /healthz (connections). */
  async refresh() {
    clearTimeout(this.#timer);
    try {
      const [channels, health] = await Promise.all([
        fetch("/channels").then((response) => (response.ok ? response.json() : null)),
        fetch("/healthz").then((response) => (response.ok ? response.json() : null)),
      ]);
      if (channels !== null) this.#showChannels(channels);
      if (health !== null) {
        const own = [...this.#watched.values()].filter((watched) => watched.filtered !== null).length;
        byId("hub-summary").textContent = `${health.subscribers} open connection(s) on this hub process, `
          + `${health.channels} active channel(s). This page uses one connection for ${this.#stream.channels.length} channel(s)`
          + `${own ? ` and ${own} more for filtered watches` : ""}.`;
      }
    } catch {
      byId("hub-summary").textContent = "The hub did not answer; the counts are from before.";
    }
    if (this.#stream.state === "open" && document.visibilityState === "visible") {
      this.#timer = setTimeout(() => this.refresh(), REFRESH_MS);
    }
  }

  #showChannels(channels) {
    const mine = new Set([...this.#stream.channels, ...[...this.#watched.values()].map((watched) => watched.channel)]);
    const ordered = [...channels].sort((a, b) => (mine.has(b.name) - mine.has(a.name))
      || (b.subscribers - a.subscribers) || a.name.localeCompare(b.name));
    const rows = ordered.slice(0, MAX_CHANNEL_ROWS).map((channel) => h("tr", {
      dataset: { channel: channel.name, subscribers: String(channel.subscribers) },
    },
    h("td", {}, mine.has(channel.name) ? h("strong", {}, channel.name) : channel.name),
    h("td", { class: "num" }, String(channel.subscribers)),
    h("td", {}, channel.clock ? "clock" : "events"),
    h("td", {}, channel.last_id ?? "–")));
    byId("channel-table").tBodies[0].replaceChildren(...rows);
  }
}
