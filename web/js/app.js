// The page: one HubStream shared by the clocks, the job and the console, and the page's URL.
//
// The URL holds what the page shows, so it can be reloaded or shared: /jobs/<id> for a job,
// ?clocks=Asia/Kolkata:5,Europe/London:1 when the clocks differ from the defaults, and
// ?watch=news,orders for the console's channels (news?event=keep%26tag=region:eu for a watch
// with a filter), ?answer=<id> for a streamed answer.

import { ANSWER_ID_RE, AnswerView } from "./answer.js";
import { ChannelConsole } from "./console.js";
import { Clocks, DEFAULT_CLOCKS, clockParam, parseClockParam } from "./clocks.js";
import { byId } from "./dom.js";
import { JOB_PATH_RE, JobView } from "./job.js";
import { HubStream } from "./stream.js";

const STATUS_TEXT = {
  idle: "Idle",
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
};

const stream = new HubStream();
const clocks = new Clocks(stream);
const channelConsole = new ChannelConsole(stream);
const job = new JobView(stream, { demo: document.documentElement.dataset.demoJobs === "on" });
const answer = new AnswerView({ demo: document.documentElement.dataset.demoJobs === "on" });

const status = byId("status");
stream.addEventListener("state", ({ detail }) => {
  status.dataset.state = detail.state;
  byId("status-text").textContent = STATUS_TEXT[detail.state] ?? detail.state;
  byId("connection-summary").textContent = summary(detail.state);
});

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

function summary(state) {
  const channels = stream.channels;
  if (state === "idle" || channels.length === 0) return "No channels watched, so no connection is open.";
  const clockCount = channels.filter((name) => name.startsWith("time/")).length;
  const jobCount = channels.filter((name) => name.startsWith("job/")).length;
  const parts = [plural(clockCount, "clock"), plural(jobCount, "job")];
  const others = channels.length - clockCount - jobCount;
  if (others > 0) parts.push(plural(others, "other channel"));
  return `Right now: one connection carrying ${plural(channels.length, "channel")} (${parts.join(", ")}).`;
}

function readUrl() {
  const query = new URLSearchParams(location.search);
  const match = JOB_PATH_RE.exec(location.pathname);
  return {
    clocks: query.has("clocks") ? parseClockParam(query.get("clocks")) : DEFAULT_CLOCKS,
    watch: (query.get("watch") ?? "").split(",").filter(Boolean),
    job: match === null ? null : match[1],
    answer: ANSWER_ID_RE.test(query.get("answer") ?? "") ? query.get("answer") : null,
  };
}

function writeUrl({ push = false } = {}) {
  const query = new URLSearchParams();
  if (clockParam(clocks.value) !== clockParam(DEFAULT_CLOCKS)) query.set("clocks", clockParam(clocks.value));
  if (channelConsole.channels.length > 0) query.set("watch", channelConsole.channels.join(","));
  if (answer.answerId !== null) query.set("answer", answer.answerId);
  const path = job.jobId === null ? "/" : `/jobs/${job.jobId}`;
  // As people read it: / : , ? = | may stand as they are in a value (& may not: it parts them)
  const search = query.toString().replace(/%(2F|3A|2C|3F|3D|7C)/g, (escape) => decodeURIComponent(escape));
  const url = `${path}${search ? `?${search}` : ""}`;
  if (url === `${location.pathname}${location.search}`) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function show(state) {
  clocks.set(state.clocks);
  for (const channel of channelConsole.channels) {
    if (!state.watch.includes(channel)) channelConsole.unwatch(channel);
  }
  for (const channel of state.watch) channelConsole.watch(channel);
  job.show(state.job);
  answer.show(state.answer);
  // A job's page opens on the job: its view first, the rest of the demo below it.
  const main = byId("main");
  const jobSection = byId("job");
  if (state.job !== null && main.firstElementChild !== jobSection) main.prepend(jobSection);
  if (state.job === null && jobSection.previousElementSibling !== byId("clocks")) byId("clocks").after(jobSection);
  document.title = state.job === null ? "ssehub: live events in your browser" : `Job ${state.job} · ssehub`;
}

let restoring = false;
for (const part of [clocks, channelConsole]) {
  part.addEventListener("change", () => { if (!restoring) writeUrl(); });
}
job.addEventListener("started", () => {
  writeUrl({ push: true });
  document.title = `Job ${job.jobId} · ssehub`;
});
answer.addEventListener("started", () => writeUrl({ push: true }));
window.addEventListener("popstate", () => {
  restoring = true;
  try { show(readUrl()); } finally { restoring = false; }
});

// The zone list first: clocks from the URL are checked against it before any is watched, since
// one unknown zone would make the hub refuse the page's whole stream.
await clocks.loadTimezones();
restoring = true;
try { show(readUrl()); } finally { restoring = false; }
// Shown: a script (or a test) that drives the page waits for this rather than for "load",
// which fires before the zone list above has arrived.
document.documentElement.dataset.ready = "true";
