// A streamed answer (the "resumable stream" recipe): tokens of a long text, one small event each
// on the channel answer/<id>, rebuilt here in order.
//
// An answer is its asker's own data: the shipped config makes answer/* private, so the view
// opens its own stream with a one-time ticket (web/js/private.js), which the demo hands out to
// whoever knows the answer's id (POST /demo/answers/<id>/tickets, standing in for your backend).
// It is a stream of its own, not the page's shared one, because a ticket opens one stream once:
// the shared stream reopens whenever the page's channels change. The first stream asks for the
// channel's history from the start, so a reload mid-answer shows the text it had and carries on
// live; a dropped connection resumes, with a new ticket, after the last id. Each token carries
// its index: one that was already applied is skipped, and one that skips ahead is counted as a
// gap (which would be a bug in the hub: the test checks there is none).

import { byId, say } from "./dom.js";
import { PrivateStream } from "./private.js";

export const ANSWER_ID_RE = /^[0-9a-f]{32}$/;

async function ticketFor(id) {
  const response = await fetch(`/demo/answers/${id}/tickets`, { method: "POST" });
  if (response.status !== 201) throw new Error(`no ticket: ${response.status}`);
  return (await response.json()).ticket;
}

export class AnswerView extends EventTarget {
  #answerId = null;
  #source = null;
  #next = 0; // the index of the next token to apply
  #text = "";
  #view = byId("answer-view");
  #output = byId("answer-text");

  constructor({ demo }) {
    super();
    const button = byId("answer-start");
    if (demo) {
      button.addEventListener("click", () => this.start());
    } else {
      byId("answer").hidden = true;
    }
  }

  get answerId() { return this.#answerId; }

  async start() {
    const button = byId("answer-start");
    const note = byId("answer-note");
    button.disabled = true;
    try {
      const response = await fetch("/demo/answers", { method: "POST" });
      const answer = await response.json().catch(() => ({}));
      if (response.status !== 202) {
        say(note, answer.error ?? `The hub answered ${response.status}.`);
        return;
      }
      say(note, null);
      this.show(answer.id);
      this.dispatchEvent(new CustomEvent("started", { detail: { id: answer.id } }));
    } catch {
      say(note, "Could not reach the hub. Try again when it is back.");
    } finally {
      button.disabled = false;
    }
  }

  /** Show answer `id`, rebuilt from its history then live (null: none). */
  show(id) {
    if (id === this.#answerId) return;
    if (this.#source !== null) this.#source.close();
    this.#source = null;
    this.#answerId = id;
    this.#next = 0;
    this.#text = "";
    this.#output.textContent = "";
    Object.assign(this.#view.dataset, { status: "waiting", tokens: "0", gaps: "0", repeats: "0" });
    this.#view.hidden = id === null;
    if (id === null) return;
    byId("answer-id").textContent = id;
    // custom event types reach an EventSource's listeners only when asked for
    const source = new PrivateStream([`answer/${id}`], () => ticketFor(id), {
      types: ["token", "end"],
      fromStart: true,
    });
    source.addEventListener("event", (e) => this.#apply(e.detail));
    this.#source = source;
  }

  #apply(message) {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    const view = this.#view;
    if (message.event === "end") {
      view.dataset.status = "done";
      this.#source?.close(); // the answer is complete: nothing more will come
      return;
    }
    if (message.event !== "token" || !Number.isInteger(data.i) || typeof data.t !== "string") return;
    if (data.i < this.#next) {
      view.dataset.repeats = String(Number(view.dataset.repeats) + 1);
      return;
    }
    if (data.i > this.#next) view.dataset.gaps = String(Number(view.dataset.gaps) + 1);
    this.#next = data.i + 1;
    this.#text += data.t;
    this.#output.textContent = this.#text;
    view.dataset.status = "streaming";
    view.dataset.tokens = String(this.#next);
  }
}
