// City clocks: one card per clock channel time/<timezone>/<seconds> (one zone may have several
// cards at different intervals: each tick names its channel, so the stream routes it).
//
// The hub sends the current time as soon as a clock is subscribed, then one tick per interval on
// whole multiples of it. The time shown is the one in the tick (its "iso" field, which carries
// the zone's offset), never the browser's own clock, so a wrong clock on the viewer's machine
// cannot show through.
//
// Clocks from the URL are checked before they are watched: one unknown zone would make the hub
// refuse the whole stream (a 400), leaving every clock blank. Bad entries are left out and named
// in a note; the others tick.

import { byId, h, say } from "./dom.js";
import { CHANNEL_RE } from "./stream.js";

export const DEFAULT_CLOCKS = Object.freeze([
  { timezone: "Asia/Kolkata", interval: 5 },
  { timezone: "Europe/London", interval: 1 },
  { timezone: "America/New_York", interval: 1 },
]);
const ZONE_RE = /^[A-Za-z0-9_+\-]+(?:\/[A-Za-z0-9_+\-]+)*$/;
const MIN_INTERVAL = 1;
const MAX_INTERVAL = 3600;
const ZONES_TIMEOUT_MS = 5000;
const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$/;
const ABBREVIATION_RE = /^[A-Za-z]{2,6}$/;
const DATE_TIME_RE = /^(\d{1,2})\/(\d{1,2})\/(\d{4}) (\d{1,2}):(\d{1,2}):(\d{1,2})$/;

export function clockChannel(timezone, interval) {
  return `time/${timezone}/${interval}`;
}

/**
 * "Asia/Kolkata:5,Europe/London:1" (the page's ?clocks= parameter) to a list of entries, in
 * order: {timezone, interval}, or {name, problem} for one that cannot be a clock as written.
 * Whether the zone exists is for Clocks.set to check (it has the hub's list).
 */
export function parseClockParam(text) {
  const entries = [];
  for (const raw of text.split(",")) {
    const item = raw.trim();
    if (item === "") continue; // "a:1,,b:2" or a trailing comma: nothing was meant
    const at = item.lastIndexOf(":");
    const timezone = item.slice(0, at).trim();
    const seconds = item.slice(at + 1).trim();
    const interval = /^\d+$/.test(seconds) ? Number(seconds) : NaN;
    if (at <= 0 || timezone === "") {
      entries.push({ name: item, problem: "write it as zone:seconds, e.g. Asia/Tokyo:5" });
    } else if (!validInterval(interval)) {
      entries.push({ name: item, problem: `the interval must be whole seconds from ${MIN_INTERVAL} to ${MAX_INTERVAL}` });
    } else {
      entries.push({ timezone, interval });
    }
  }
  return entries;
}

export function clockParam(clocks) {
  return clocks.map(({ timezone, interval }) => `${timezone}:${interval}`).join(",");
}

function validInterval(interval) {
  return Number.isInteger(interval) && interval >= MIN_INTERVAL && interval <= MAX_INTERVAL;
}

/** "America/Argentina/Buenos_Aires" → "Buenos Aires". */
export function cityName(timezone) {
  return timezone.split("/").pop().replaceAll("_", " ");
}

/**
 * The wall time in a tick: hours, minutes, seconds, date and UTC offset, as the hub sent them;
 * the offset led by the zone's abbreviation ("BST UTC+01:00") when it has letters of its own
 * (tzdata writes "+0545" for Kathmandu: the offset again).
 */
export function readTick(data) {
  const iso = ISO_RE.exec(data.iso ?? "");
  if (iso !== null) {
    const [, year, month, day, hour, minute, second, offset] = iso;
    const utc = offset === undefined || offset === "Z" ? "UTC" : `UTC${offset}`;
    const named = typeof data.abbreviation === "string" && ABBREVIATION_RE.test(data.abbreviation)
      && data.abbreviation !== "UTC";
    return {
      time: `${hour}:${minute}:${second}`,
      year: Number(year), month: Number(month), day: Number(day),
      offset: named ? `${data.abbreviation} ${utc}` : utc,
    };
  }
  const loose = DATE_TIME_RE.exec(data.dateTime ?? "");
  if (loose === null) return null;
  const [, day, month, year, hour, minute, second] = loose.map((part) => part.padStart(2, "0"));
  return {
    time: `${hour}:${minute}:${second}`,
    year: Number(year), month: Number(month), day: Number(day), offset: "",
  };
}

function dateText({ year, month, day }) {
  // Computed in UTC on purpose: it is the clock's calendar date, not the viewer's.
  return new Date(Date.UTC(year, month - 1, day)).toLocaleDateString(undefined, {
    weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC",
  });
}

/** An entry's name as shown in a note: whatever the URL held, so keep it short. */
function shownName(name) {
  return name.length > 60 ? `${name.slice(0, 60)}…` : name;
}

export class Clocks extends EventTarget {
  #stream;
  #clocks = new Map(); // channel -> { timezone, interval, element, unwatch }
  #zones = null; // Set of the hub's time zone names, once loaded
  #list = byId("clock-list");
  #empty = byId("clock-empty");
  #input = byId("tz-input");
  #interval = byId("tz-interval");
  #error = byId("clock-error");
  #note = byId("clock-note");

  constructor(stream) {
    super();
    this.#stream = stream;
    byId("clock-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const problem = this.add(this.#input.value.trim(), Number(this.#interval.value), true);
      say(this.#error, problem);
      if (problem === null) this.#input.value = "";
      else this.#input.focus();
    });
    this.#input.addEventListener("input", () => say(this.#error, null));
  }

  /** The clocks shown, in order. */
  get value() {
    return [...this.#clocks.values()].map(({ timezone, interval }) => ({ timezone, interval }));
  }

  /** Fill the search list from GET /timezones (the names this hub's zoneinfo knows). */
  async loadTimezones() {
    try {
      // Bounded: the page waits for this list before it opens its stream.
      const response = await fetch("/timezones", { signal: AbortSignal.timeout(ZONES_TIMEOUT_MS) });
      if (!response.ok) return;
      // Names with "+" (Etc/GMT+5) are valid zones but not valid channel names: leave them out.
      const names = (await response.json()).filter((name) => CHANNEL_RE.test(clockChannel(name, 1)));
      this.#zones = new Set(names);
      byId("tz-list").replaceChildren(...names.map((name) => h("option", { value: name })));
    } catch {
      // Without the list, any name is tried and the hub's answer decides.
    }
  }

  /** Show a clock for a city or zone typed in the form; returns an error text or null. */
  add(text, interval, fromForm = false) {
    if (!text) return "Type a city or time zone, e.g. Tokyo or Europe/Paris.";
    const timezone = this.#resolve(text);
    if (typeof timezone !== "string") return timezone.error;
    if (!validInterval(interval)) return `The interval must be ${MIN_INTERVAL} to ${MAX_INTERVAL} seconds.`;
    const channel = clockChannel(timezone, interval);
    if (!CHANNEL_RE.test(channel)) {
      return `${timezone} cannot be a clock: channel names allow only A-Z a-z 0-9 _ - . : @ /`;
    }
    const own = this.#clocks.get(channel);
    if (own !== undefined) {
      if (fromForm) own.element.querySelector(".remove").focus();
      return null;
    }
    this.#show(timezone, interval);
    return null;
  }

  remove(channel) {
    const clock = this.#clocks.get(channel);
    if (clock === undefined) return;
    clock.unwatch();
    clock.element.remove();
    this.#clocks.delete(channel);
    this.#changed();
  }

  /**
   * Replace all clocks (at start and on history navigation: from the URL or the defaults).
   * Entries come from parseClockParam; zone names must be exact. Each entry that cannot be a
   * clock is left out and named in the note, so the others still tick.
   */
  set(entries) {
    const ignored = [];
    const clocks = [];
    for (const entry of entries) {
      const problem = entry.problem ?? this.#check(entry.timezone, entry.interval);
      if (problem === null) clocks.push(entry);
      else ignored.push({ name: entry.name ?? entry.timezone, problem });
    }
    const wanted = new Set(clocks.map(({ timezone, interval }) => clockChannel(timezone, interval)));
    for (const channel of [...this.#clocks.keys()]) {
      if (!wanted.has(channel)) this.remove(channel);
    }
    for (const { timezone, interval } of clocks) {
      if (!this.#clocks.has(clockChannel(timezone, interval))) this.#show(timezone, interval);
    }
    this.#note.replaceChildren(...ignored.map(({ name, problem }) => h("li", {
      dataset: { name },
    }, `Ignored ${shownName(name)}: ${problem}`)));
    this.#note.hidden = ignored.length === 0;
  }

  /** Why a zone and interval cannot be a clock, or null. */
  #check(timezone, interval) {
    if (!validInterval(interval)) {
      return `the interval must be whole seconds from ${MIN_INTERVAL} to ${MAX_INTERVAL}`;
    }
    if (!CHANNEL_RE.test(clockChannel(timezone, interval))) {
      return "not allowed in a channel name (A-Z a-z 0-9 _ - . : @ /)";
    }
    if (this.#zones === null) {
      // The list did not load: take a well-formed name as it is; the hub decides.
      return ZONE_RE.test(timezone) ? null : "not a time zone name";
    }
    return this.#zones.has(timezone) ? null : "unknown timezone";
  }

  #show(timezone, interval) {
    const channel = clockChannel(timezone, interval);
    const element = this.#card(timezone, interval);
    const unwatch = this.#stream.watch(channel, (message) => this.#tick(element, message));
    this.#list.append(element);
    this.#clocks.set(channel, { timezone, interval, element, unwatch });
    this.#changed();
  }

  #resolve(text) {
    if (this.#zones === null) {
      // The list is not loaded (yet): take a well-formed name as it is; the hub checks it.
      return ZONE_RE.test(text) ? text : { error: "Type a time zone name such as Europe/Paris (the list of cities is not loaded)." };
    }
    if (this.#zones.has(text)) return text;
    const wanted = text.toLowerCase().replaceAll(" ", "_");
    const names = [...this.#zones];
    const exact = names.filter((name) => name.toLowerCase() === wanted
      || name.toLowerCase().split("/").pop() === wanted);
    if (exact.length === 1) return exact[0];
    const partial = exact.length > 1 ? exact : names.filter((name) => name.toLowerCase().includes(wanted));
    if (partial.length === 1) return partial[0];
    if (partial.length === 0) return { error: `No time zone matches "${text}". Try a city such as Tokyo, or a name such as Europe/Paris.` };
    const shown = partial.slice(0, 5).join(", ");
    return { error: `Several time zones match "${text}": ${shown}${partial.length > 5 ? ", …" : ""}. Pick one.` };
  }

  #card(timezone, interval) {
    const city = cityName(timezone);
    const channel = clockChannel(timezone, interval);
    const remove = h("button", {
      // The interval too: one city may have several clocks, and each button needs its own name.
      type: "button", class: "remove", "aria-label": `Remove the ${city} clock (every ${interval} s)`,
      onclick: () => {
        const next = element.nextElementSibling ?? element.previousElementSibling;
        this.remove(channel);
        (next?.querySelector(".remove") ?? this.#input).focus();
      },
    }, "Remove");
    const element = h("li", {
      class: "clock",
      dataset: { channel, timezone, interval: String(interval), ticks: "0", iso: "", id: "" },
    },
    h("h3", { class: "city" }, city),
    remove,
    h("p", { class: "time" }, h("time", {}, "--:--:--")),
    h("p", { class: "date" }, "waiting for the hub…"),
    h("p", { class: "zone" }, `${timezone} · every ${interval} s`));
    return element;
  }

  #tick(element, message) {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    const tick = readTick(data);
    if (tick === null) return;
    const time = element.querySelector("time");
    time.textContent = tick.time;
    time.setAttribute("datetime", data.iso ?? "");
    element.querySelector(".date").textContent = dateText(tick);
    const { timezone, interval } = element.dataset;
    // the offset in one piece: "UTC-05:00" would otherwise wrap at its hyphen
    element.querySelector(".zone").replaceChildren(
      `${timezone} · `, h("span", { class: "nowrap" }, tick.offset), ` · every ${interval} s`);
    element.dataset.iso = data.iso ?? "";
    element.dataset.id = String(data.id ?? "");
    element.dataset.ticks = String(Number(element.dataset.ticks) + 1);
  }

  #changed() {
    this.#empty.hidden = this.#clocks.size > 0;
    this.dispatchEvent(new Event("change"));
  }
}
