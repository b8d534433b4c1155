// A long job, watched live: progress bar, stages and result from the channel job/<id>.
//
// The view is rebuilt from the job's events alone (started, progress, done, failed), asked for
// from the start of the job's channel (replay=job/<id>), so a reload, a shared link or a visit after the job ended shows the same
// thing as watching it from the start. Applying an event twice changes nothing, which keeps a
// replay after a reset harmless. Any service that publishes these events gets this view:
// examples/job_worker.py does it over HTTP.
//
// Once the job has ended (done, failed) the view closes its channel: it stops watching it, so
// the page's one stream goes on without it, and says so. It does the same when the hub sends
// `event: close` (a service deleted the channel with DELETE /channels/job/<id>).

import { byId, h, say } from "./dom.js";

export const JOB_ID_RE = /^[A-Za-z0-9_.:@-]{1,100}$/;
export const JOB_PATH_RE = /^\/jobs\/([A-Za-z0-9_.:@-]{1,100})\/?$/;

const RESULT_LABELS = {
  rows: "Rows analysed",
  revenue: "Revenue",
  mean_order: "Mean order",
  largest_order: "Largest order",
  top_region: "Top region",
  by_region: "By region",
};

function formatValue(value) {
  if (typeof value === "number") return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
  if (value !== null && typeof value === "object") {
    return Object.entries(value).map(([key, item]) => `${key}: ${formatValue(item)}`).join(" · ");
  }
  return String(value);
}

export class JobView extends EventTarget {
  #stream;
  #demo;
  #jobId = null;
  #unwatch = null;
  #stages = [];
  #view = byId("job-view");
  #start = byId("job-start");
  #note = byId("job-note");
  #progress = byId("job-progress");
  #pct = byId("job-pct");

  constructor(stream, { demo }) {
    super();
    this.#stream = stream;
    this.#demo = demo;
    if (demo) {
      this.#start.addEventListener("click", () => this.start());
    } else {
      this.#start.hidden = true;
      byId("job-intro").textContent = "This hub does not run the demo job runner (demo_jobs = false). "
        + "Jobs that a service publishes to job/<id> show here at /jobs/<id>.";
    }
  }

  get jobId() { return this.#jobId; }

  /** Ask the hub's demo runner for a job, then watch it. */
  async start() {
    this.#start.disabled = true;
    say(this.#note, "Starting a job…");
    try {
      const response = await fetch("/demo/jobs", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
      });
      const answer = await response.json().catch(() => ({}));
      if (response.status !== 202) {
        const wait = response.headers.get("Retry-After");
        say(this.#note, `${answer.error ?? `The hub answered ${response.status}.`}${wait ? ` (retry in ${wait} s)` : ""}`);
        return;
      }
      say(this.#note, null);
      this.show(answer.id, { started: true });
      this.dispatchEvent(new CustomEvent("started", { detail: { id: answer.id } }));
    } catch {
      say(this.#note, "Could not reach the hub to start a job. Try again when it is back.");
    } finally {
      this.#start.disabled = false;
    }
  }

  /**
   * Watch job `id` from the start of its history (null: show no job). A job this page did not
   * just start may be unknown (a typo) or expired (its history is gone): the hub is asked.
   */
  show(id, { started = false } = {}) {
    if (id === this.#jobId) return;
    if (this.#unwatch !== null) this.#unwatch();
    this.#unwatch = null;
    this.#jobId = id;
    if (id === null) {
      this.#view.hidden = true;
      return;
    }
    this.#reset();
    this.#watching(true);
    byId("job-id").textContent = id;
    const link = byId("job-link");
    link.href = `/jobs/${id}`;
    link.textContent = new URL(`/jobs/${id}`, location.href).href;
    this.#view.hidden = false;
    this.#unwatch = this.#stream.watch(`job/${id}`, (message) => this.#apply(message), { history: true });
    if (!started) this.#checkKnown(id);
  }

  async #checkKnown(id) {
    let channels;
    try {
      const response = await fetch("/channels");
      if (!response.ok) return;
      channels = await response.json();
    } catch {
      return; // the hub is away: the page says so elsewhere, and the job's events come later
    }
    const found = channels.find((channel) => channel.name === `job/${id}`);
    if (id !== this.#jobId || this.#view.dataset.status !== "waiting") return;
    if (found === undefined || !found.last_id) {
      this.#view.dataset.status = "unknown";
      byId("job-message").textContent = `Unknown or expired job: the hub holds no events for job/${id}. `
        + "It shows here if the job starts publishing.";
    }
  }

  /** Stop watching the job's channel (it ended, or the hub closed it) and show that. */
  #closeChannel(why) {
    if (this.#unwatch === null) return;
    this.#unwatch();
    this.#unwatch = null;
    this.#watching(false, why);
  }

  #watching(open, why = "") {
    const note = byId("job-channel");
    this.#view.dataset.channel = open ? "open" : "closed";
    note.textContent = open ? "" : `Channel job/${this.#jobId} closed: ${why}.`;
    note.hidden = open;
  }

  #reset() {
    this.#stages = [];
    this.#view.dataset.status = "waiting";
    byId("job-name").textContent = "";
    byId("job-stages").replaceChildren();
    byId("job-message").textContent = "Waiting for the job's first event…";
    byId("job-result").hidden = true;
    byId("job-result-list").replaceChildren();
    this.#setPct(0);
  }

  #setPct(pct) {
    const value = Math.max(0, Math.min(100, Math.round(Number(pct) || 0)));
    this.#progress.value = value;
    this.#progress.textContent = `${value} %`;
    this.#pct.textContent = `${value} %`;
  }

  #markStages(activeIndex, allDone = false) {
    byId("job-stages").querySelectorAll("li").forEach((item, index) => {
      item.dataset.state = allDone || index < activeIndex ? "done" : index === activeIndex ? "active" : "pending";
    });
  }

  #apply(message) {
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      data = { message: message.data };
    }
    if (data === null || typeof data !== "object") data = { message: String(data) };
    const view = this.#view;
    switch (message.event) {
      case "started":
        if (view.dataset.status === "unknown") view.dataset.status = "waiting";
        if (Array.isArray(data.stages)) {
          this.#stages = data.stages.map(String);
          byId("job-stages").replaceChildren(...this.#stages.map((stage) => h("li", { dataset: { state: "pending" } }, stage)));
        }
        if (data.title) byId("job-name").textContent = String(data.title);
        if (view.dataset.status !== "done" && view.dataset.status !== "failed") {
          view.dataset.status = "running";
          byId("job-message").textContent = "Started.";
        }
        break;
      case "progress":
        if (view.dataset.status === "done" || view.dataset.status === "failed") break;
        view.dataset.status = "running";
        this.#setPct(data.pct);
        if (Number.isInteger(data.stage_index)) this.#markStages(data.stage_index);
        byId("job-message").textContent = String(data.message ?? data.stage ?? "");
        break;
      case "done": {
        view.dataset.status = "done";
        this.#setPct(100);
        this.#markStages(this.#stages.length, true);
        const seconds = typeof data.seconds === "number" ? ` in ${data.seconds.toLocaleString()} s` : "";
        byId("job-message").textContent = `Done${seconds}.`;
        this.#showResult(data.result);
        this.#closeChannel("the job is done");
        break;
      }
      case "failed":
        view.dataset.status = "failed";
        byId("job-message").textContent = `Failed: ${data.error ?? "no reason given"}`;
        this.#closeChannel("the job failed");
        break;
      case "close":
        this.#closeChannel("the hub closed it");
        break;
      default:
        break; // other events of the channel show in the console only
    }
  }

  #showResult(result) {
    if (result === undefined) return;
    const list = byId("job-result-list");
    const entries = result !== null && typeof result === "object" ? Object.entries(result) : [["Result", result]];
    list.replaceChildren(...entries.flatMap(([key, value]) => [
      h("dt", {}, RESULT_LABELS[key] ?? key),
      h("dd", { dataset: { key } }, formatValue(value)),
    ]));
    byId("job-result").hidden = false;
  }
}
