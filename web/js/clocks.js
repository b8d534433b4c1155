// City clocks: one card per time zone, each fed by its clock channel time/<timezone>/<seconds>.
//
// The hub sends the current time as soon as a clock is subscribed, then one tick per interval on
// whole multiples of it. The time shown is the one in the tick (its "iso" field, which carries
// the zone's offset), never the browser's own clock, so a wrong clock on the viewer's machine
// cannot show through.

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
const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?$/;
const DATE_TIME_RE = /^(\d{1,2})\/(\d{1,2})\/(\d{4}) (\d{1,2}):(\d{1,2}):(\d{1,2})$/;

export function clockChannel(timezone, interval) {
  return `time/${timezone}/${interval}`;
}

/** "Asia/Kolkata:5,Europe/London:1" (the page's ?clocks= parameter) to a list; skips junk. */
export function parseClockParam(text) {
  const clocks = [];
  for (const item of text.split(",")) {
    const at = item.lastIndexOf(":");
    const timezone = item.slice(0, at).trim();
    const interval = Number(item.slice(at + 1));
    if (at > 0 && validInterval(interval) && timezone.length <= 100 && ZONE_RE.test(timezone)) {
      clocks.push({ timezone, interval });
    }
  }
  return clocks;
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

/** The wall time in a tick: hours, minutes, seconds, date and UTC offset, as the hub sent them. */
export function readTick(data) {
  const iso = ISO_RE.exec(data.iso ?? "");
  if (iso !== null) {
    const [, year, month, day, hour, minute, second, offset] = iso;
    return {
      time: `${hour}:${minute}:${second}`,
      year: Number(year), month: Number(month), day: Number(day),
      offset: offset === undefined || offset === "Z" ? "UTC" : `UTC${offset}`,
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

export class Clocks extends EventTarget {
  #stream;
  #clocks = new Map(); // timezone -> { interval, element, unwatch }
  #zones = null; // Set of the hub's time zone names, once loaded
  #list = byId("clock-list");
  #empty = byId("clock-empty");
  #input = byId("tz-input");
  #interval = byId("tz-interval");
  #error = byId("clock-error");

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
    return [...this.#clocks].map(([timezone, { interval }]) => ({ timezone, interval }));
  }

  /** Fill the search list from GET /timezones (the names this hub's zoneinfo knows). */
  async loadTimezones() {
    try {
      const response = await fetch("/timezones");
      if (!response.ok) return;
      // Names with "+" (Etc/GMT+5) are valid zones but not valid channel names: leave them out.
      const names = (await response.json()).filter((name) => CHANNEL_RE.test(clockChannel(name, 1)));
      this.#zones = new Set(names);
      byId("tz-list").replaceChildren(...names.map((name) => h("option", { value: name })));
    } catch {
      // Without the list, any name is tried and the hub's answer decides.
    }
  }

  /** Show a clock (replacing another interval of the same zone); returns an error text or null. */
  add(text, interval, fromForm = false) {
    if (!text) return "Type a city or time zone, e.g. Tokyo or Europe/Paris.";
    const timezone = this.#resolve(text);
    if (typeof timezone !== "string") return timezone.error;
    if (!validInterval(interval)) return `The interval must be ${MIN_INTERVAL} to ${MAX_INTERVAL} seconds.`;
    const channel = clockChannel(timezone, interval);
    if (!CHANNEL_RE.test(channel)) {
      return `${timezone} cannot be a clock: channel names allow only A-Z a-z 0-9 _ - . : @ /`;
    }
    const own = this.#clocks.get(timezone);
    const conflict = this.#stream.clockConflict(channel);
    if (conflict !== null && (own === undefined || conflict !== clockChannel(timezone, own.interval))) {
      return `The console watches ${conflict}: a tick does not name its channel, so this page shows one interval per time zone.`;
    }
    if (own !== undefined && own.interval === interval) {
      if (fromForm) own.element.querySelector(".remove").focus();
      return null;
    }
    const element = this.#card(timezone, interval);
    const unwatch = this.#stream.watch(channel, (message) => this.#tick(element, message));
    if (own !== undefined) {
      own.unwatch();
      own.element.replaceWith(element);
    } else {
      this.#list.append(element);
    }
    this.#clocks.set(timezone, { interval, element, unwatch });
    this.#changed();
    return null;
  }

  remove(timezone) {
    const clock = this.#clocks.get(timezone);
    if (clock === undefined) return;
    clock.unwatch();
    clock.element.remove();
    this.#clocks.delete(timezone);
    this.#changed();
  }

  /** Replace all clocks (used at start, from the URL or the defaults). */
  set(clocks) {
    const wanted = new Set(clocks.map(({ timezone }) => timezone));
    for (const timezone of [...this.#clocks.keys()]) {
      if (!wanted.has(timezone)) this.remove(timezone);
    }
    for (const { timezone, interval } of clocks) this.add(timezone, interval);
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
    const remove = h("button", {
      type: "button", class: "remove", "aria-label": `Remove the ${city} clock`,
      onclick: () => {
        const next = element.nextElementSibling ?? element.previousElementSibling;
        this.remove(timezone);
        (next?.querySelector(".remove") ?? this.#input).focus();
      },
    }, "Remove");
    const element = h("li", {
      class: "clock", dataset: { timezone, interval: String(interval), ticks: "0", iso: "" },
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
    element.querySelector(".zone").textContent = `${timezone} · ${tick.offset} · every ${interval} s`;
    element.dataset.iso = data.iso ?? "";
    element.dataset.ticks = String(Number(element.dataset.ticks) + 1);
  }

  #changed() {
    this.#empty.hidden = this.#clocks.size > 0;
    this.dispatchEvent(new Event("change"));
  }
}
