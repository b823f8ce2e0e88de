// A phone built from the stock automerge-repo packages and docs/protocol.md alone: it bootstraps
// from /api/v1/me, syncs over the stock WebSocket adapter, opens its unit's index and a task, and
// appends an event. Driven by the end-to-end tests; prints one JSON line with what it saw.
//
// Configuration comes as JSON in BATON_PHONE:
//   { http, ws, token, user, role, device, template, mode, text, expect }
// mode: "note"   append a note with `text`, then wait until notes with every text in `expect`
//                are in the task (another device's concurrent notes);
//       "forge"  append a note in someone else's name (the server must refuse it);
//       "invent" create a document that is not a task (the server must refuse it);
//       "nest"   append a note whose payload is nested 300 maps deep (the server must refuse it
//                and stay up).
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";
import { randomUUID } from "node:crypto";

const config = JSON.parse(process.env.BATON_PHONE);
const deadline = Date.now() + 20_000;

// The stock adapter rethrows socket errors such as a reset when the server goes away.
process.on("uncaughtException", (e) => console.error("uncaught:", e.message));

function fail(message) {
  console.log(JSON.stringify({ ok: false, error: message }));
  process.exit(1);
}

async function until(check, what) {
  while (!check()) {
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// docs/protocol.md: "<wall ms, 15 digits>-<counter, 6 digits>", after every stamp already seen.
function nextHlc(events) {
  let wall = Date.now();
  let counter = 0;
  for (const e of events) {
    const [w, c] = String(e.hlc).split("-").map(Number);
    if (w > wall || (w === wall && c >= counter)) {
      wall = w;
      counter = c + 1;
    }
  }
  return `${String(wall).padStart(15, "0")}-${String(counter).padStart(6, "0")}`;
}

// A payload `depth` maps deep.
function nested(depth, text) {
  let payload = { text };
  for (let i = 0; i < depth; i++) payload = { text, inner: payload };
  return payload;
}

const me = await fetch(`${config.http}/api/v1/me`, {
  headers: { authorization: `Bearer ${config.token}` },
}).then((r) => r.json());
const unit = me.units[0];

const repo = new Repo({
  network: [new WebSocketClientAdapter(`${config.ws}/sync?token=${encodeURIComponent(config.token)}`)],
  sharePolicy: async () => true,
});

if (config.mode === "invent") {
  const handle = repo.create({ hello: "world" });
  await new Promise((r) => setTimeout(r, 1_000));
  console.log(JSON.stringify({ ok: true, url: handle.url }));
  process.exit(0);
}

const index = await repo.find(unit.index_url);
// Baton writes scalar strings, which the JavaScript library reads as ImmutableString: compare
// them as strings.
const entry = Object.entries(index.doc().tasks).find(([, t]) => String(t.template.id) === config.template);
if (!entry) fail(`no ${config.template} task on ${unit.id}: ${JSON.stringify(index.doc())}`);
const taskUrl = String(entry[1].url);
const task = await repo.find(taskUrl);

const id = randomUUID();
const now = Date.now();
task.change((d) => {
  d.events.push({
    id,
    kind: "note",
    actor: { user: config.mode === "forge" ? "dr.fox" : config.user, role: config.role },
    device: config.device,
    device_time: now,
    hlc: nextHlc(d.events),
    payload: config.mode === "nest" ? nested(300, config.text) : { text: config.text },
  });
});

if (config.mode === "note") {
  // Stored? The server's view of the task lists every event it accepted.
  const taskId = taskUrl.replace(/^automerge:/, "");
  let stored = false;
  while (!stored) {
    if (Date.now() > deadline) fail(`the server never listed event ${id}`);
    const view = await fetch(`${config.http}/api/v1/tasks/${taskId}`, {
      headers: { authorization: `Bearer ${config.token}` },
    }).then((r) => r.json());
    stored = (view.state?.history ?? []).some((h) => h.event === id);
    if (!stored) await new Promise((r) => setTimeout(r, 20));
  }
  const texts = () =>
    task
      .doc()
      .events.filter((e) => e.kind === "note")
      .map((e) => String(e.payload.text));
  await until(() => config.expect.every((t) => texts().includes(t)), `notes ${config.expect}`);
  console.log(JSON.stringify({ ok: true, task: taskUrl, event: id, notes: texts() }));
} else {
  await new Promise((r) => setTimeout(r, 1_000));
  console.log(JSON.stringify({ ok: true, task: taskUrl, event: id }));
}
process.exit(0);
