// A private channel with a plain EventSource and one-time tickets: the README's recipe.
//
// A native EventSource cannot send headers, so a private stream opens with ?ticket=, which the
// hub spends at once. Left to itself, the browser would reconnect with the same, spent ticket,
// get a 403 and stop for good. So on any error this closes the stream itself, asks your backend
// for a new ticket (`getTicket`: a function returning a promise of the ticket string), and
// opens again with ?lastEventId= set to the last id received: the hub replays what was missed,
// and every event arrives exactly once, in order.
//
//   const stream = new PrivateStream(["user/42"], async () =>
//     (await (await fetch("/my-backend/ticket")).json()).ticket);
//   stream.addEventListener("event", (e) => console.log(e.detail.id, e.detail.data));
//
// With `fromStart: true` the first stream (no id received yet) asks for the channels' history
// from the start (`from=start`), as a page that was reloaded must; later ones resume after the
// last id.

const ID_RE = /^(\d{1,19}):/;

export class PrivateStream extends EventTarget {
  #channels;
  #getTicket;
  #base;
  #types;
  #retryMs;
  #source = null;
  #lastId = null;
  #timer = null;
  #closed = false;
  #fromStart;

  constructor(
    channels, getTicket, { base = "", types = ["message"], retryMs = 1000, fromStart = false } = {},
  ) {
    super();
    this.#fromStart = fromStart;
    this.#channels = [...channels];
    this.#getTicket = getTicket;
    this.#base = base;
    this.#types = [...types, "close"];
    this.#retryMs = retryMs;
    this.#open();
  }

  get lastEventId() { return this.#lastId; }

  close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#source !== null) this.#source.close();
  }

  async #open() {
    if (this.#closed) return;
    let ticket;
    try {
      ticket = await this.#getTicket();
    } catch {
      this.#retry();
      return;
    }
    if (this.#closed) return;
    const query = new URLSearchParams();
    for (const channel of this.#channels) query.append("channel", channel);
    query.set("ticket", ticket);
    if (this.#lastId !== null) query.set("lastEventId", this.#lastId);
    else if (this.#fromStart) query.set("from", "start");
    const source = new EventSource(`${this.#base}/events?${query}`);
    this.#source = source;
    source.addEventListener("open", () => this.#state("open"));
    source.addEventListener("error", () => {
      // Never let the browser retry with the spent ticket: a new one, from the last id.
      source.close();
      if (source === this.#source) this.#retry();
    });
    for (const type of this.#types) {
      source.addEventListener(type, (event) => this.#frame(event));
    }
  }

  #retry() {
    this.#state("reconnecting");
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#open(), this.#retryMs);
  }

  #state(state) {
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }

  #frame(event) {
    // No de-duplication here: the hub's resume is exact (what follows lastEventId, once).
    if (event.type !== "close" && ID_RE.test(event.lastEventId)) this.#lastId = event.lastEventId;
    const detail = { id: event.lastEventId, event: event.type, data: event.data };
    this.dispatchEvent(new CustomEvent("event", { detail }));
  }
}
