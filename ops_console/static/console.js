// The operators' console: sign-in by code, the community's map and boards from the snapshot,
// then live from the event stream. Plain browser JavaScript on the public API (no build step,
// no CDN: Leaflet is vendored next to this file), and no phone number is ever put on the page.
"use strict";

const api = {
  token: sessionStorage.getItem("ops-token"),
  async call(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw Object.assign(new Error((data && data.detail) || r.statusText), { status: r.status, data });
    return data;
  },
};

const $ = (id) => document.getElementById(id);
const text = (tag, value, cls) => {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
};
const STATE_COLOURS = { idle: "#2e7d32", offered: "#f59f00", assigned: "#1971c2", on_site: "#7048e8", offline: "#8c959f" };
const JOB_COLOURS = { under_review: "#8c959f", open: "#e8590c", assigned: "#1971c2", in_progress: "#7048e8", unfilled: "#b42318", completed: "#2e7d32", cancelled: "#57606a" };
const SEVERITY = { critical: 0, high: 1, warning: 2, info: 3 };

// --- sign-in --------------------------------------------------------------------------------

function claims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return null;
  }
}

function signedIn(token) {
  api.token = token;
  sessionStorage.setItem("ops-token", token);
  const c = claims(token) || {};
  const ids = (c.extras && c.extras.communities) || [];
  const select = $("community");
  select.replaceChildren(...ids.map((id) => text("option", `#${id}`)));
  ids.forEach((id, i) => { select.options[i].value = String(id); });
  if (!ids.length) {  // an admin: every community, chosen by id
    const id = prompt("Community id to watch", "1");
    select.replaceChildren(text("option", `#${id}`));
    select.options[0].value = String(id);
  }
  $("signin").hidden = true;
  $("console").hidden = false;
  watch(Number(select.value));
}

$("phone-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  try {
    await api.call("POST", "/v1/auth/otp", { phone: $("phone").value });
    $("code-form").hidden = false;
    $("code").focus();
  } catch (err) {
    $("signin-error").textContent = err.message;
  }
});

$("code-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const t = await api.call("POST", "/v1/auth/token", { phone: $("phone").value, code: $("code").value, role: "operator" });
    $("phone").value = "";  // not kept on the page
    signedIn(t.access_token);
  } catch (err) {
    $("signin-error").textContent = err.message;
  }
});

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signedIn($("token").value.trim());
});

$("signout").addEventListener("click", () => {
  sessionStorage.removeItem("ops-token");
  location.reload();
});

$("community").addEventListener("change", (e) => watch(Number(e.target.value)));

// --- the map and the boards -------------------------------------------------------------------

const view = { shown: null, cid: null, jobs: new Map(), workers: new Map(), unplaced: new Map(), stamps: new Map(), alerts: new Map(), cells: new Map(), source: null, last: null, maxAge: 120, base: null };
// `unplaced`: the latest fix of workers the console does not show yet. A `positions` event
// (coalesced once a second by the process that took the ping) and the `worker` event of the
// same worker going on line (sent after its commit, maybe by another process) come in either
// order, and a worker may ping before going on line; the fix waits here for its worker.
let map = null;
let layers = null;

function setupMap() {
  if (map) return;
  // No tile server: a plain background with the shapes (works with no internet at all).
  map = L.map("map", { preferCanvas: false, zoomControl: true, attributionControl: false });
  layers = { area: L.layerGroup().addTo(map), cells: L.layerGroup().addTo(map), waves: L.layerGroup().addTo(map), jobs: L.layerGroup().addTo(map), workers: L.layerGroup().addTo(map) };
}

function drawArea(c) {
  layers.area.clearLayers();
  map.setView([c.center.lat, c.center.lng], 14);  // a view first: shapes need the projection
  const style = { color: "#1c2430", weight: 2, fill: false, dashArray: "6 4" };
  const shape = c.boundary
    ? L.polygon(c.boundary.map((p) => [p.lat, p.lng]), style)
    : L.circle([c.center.lat, c.center.lng], { ...style, radius: c.radius_m });
  shape.addTo(layers.area);
  map.fitBounds(shape.getBounds(), { padding: [20, 20] });
}

// Supply and demand per H3 cell: the snapshot lists the cells over the area with their counts;
// after it the console recounts from what the stream tells (every worker, position and job
// carries its cell), at most every half second.
function drawCells(cells) {
  layers.cells.clearLayers();
  view.cells.clear();
  for (const c of cells) {
    const shape = L.polygon(c.boundary.map((p) => [p.lat, p.lng]), { weight: 1, className: "cell" })
      .bindTooltip("")
      .addTo(layers.cells);
    view.cells.set(c.cell, { cell: c.cell, supply: c.supply, demand: c.demand, shape });
  }
  styleCells();
}

function styleCells() {
  const all = [...view.cells.values()];
  const top = Math.max(1, ...all.map((c) => Math.max(c.supply, c.demand)));
  for (const c of all) {
    const busiest = Math.max(c.supply, c.demand);
    const colour = c.demand > c.supply ? "#e8590c" : "#2e7d32";
    c.shape.setStyle(busiest
      ? { color: colour, fillColor: colour, fillOpacity: 0.12 + 0.5 * (busiest / top), opacity: 0.4 }
      : { color: "#8c959f", fillColor: "#8c959f", fillOpacity: 0.02, opacity: 0.15 });
    c.shape.setTooltipContent(`supply ${c.supply} · demand ${c.demand}`);
  }
}

function supplies(w) {  // would dispatch offer this worker a job where they stand now?
  return w.state === "idle" && w.available && w.cell && Date.now() / 1000 - (w.fixAt || 0) <= view.maxAge;
}

function recount() {
  const stale = Date.now() / 1000 - view.maxAge;  // a fix too old to supply anything
  for (const [id, p] of view.unplaced) if (p.at < stale) view.unplaced.delete(id);
  const supply = new Map();
  const demand = new Map();
  for (const w of view.workers.values()) if (supplies(w)) supply.set(w.cell, (supply.get(w.cell) || 0) + 1);
  for (const j of view.jobs.values()) if (j.status === "open" && j.cell) demand.set(j.cell, (demand.get(j.cell) || 0) + 1);
  for (const c of view.cells.values()) {
    c.supply = supply.get(c.cell) || 0;
    c.demand = demand.get(c.cell) || 0;
  }
  styleCells();
}

let recountSoon = null;
function cellsChanged() {
  if (recountSoon === null) recountSoon = setTimeout(() => { recountSoon = null; recount(); }, 500);
}

// An optional base map (`MAP_STYLE_URL`): an XYZ tile template, or a style JSON whose first
// raster source gives the tiles. Without it the map is the shapes alone (no internet needed).
async function baseMap(url) {
  if (!url || view.base) return;
  let template = url;
  let attribution = "";
  if (/\.json(\?|$)/.test(url)) {
    const style = await fetch(url).then((r) => r.json()).catch(() => null);
    const raster = style && Object.values(style.sources || {}).find((s) => s.type === "raster" && s.tiles);
    if (!raster) return;
    template = raster.tiles[0];
    attribution = raster.attribution || "";
  }
  view.base = L.tileLayer(template, { maxZoom: 19, attribution, className: "base" }).addTo(map);
  view.base.bringToBack();
  if (attribution) L.control.attribution({ prefix: false }).addTo(map);
}

function drawWorker(w) {
  if (w._marker) layers.workers.removeLayer(w._marker);
  if (!w.location) return;
  w._marker = L.circleMarker([w.location.lat, w.location.lng], { radius: 5, color: "#fff", weight: 1, fillColor: STATE_COLOURS[w.state] || "#8c959f", fillOpacity: 1, className: "worker" })
    .bindTooltip(`${w.name} · ${w.state}`)
    .addTo(layers.workers);
}

function drawJob(j) {
  // The map's own layers go on underscored keys: the job's fields (`wave` is a number) stay.
  if (j._marker) layers.jobs.removeLayer(j._marker);
  if (j._circle) layers.waves.removeLayer(j._circle);
  j._marker = j._circle = null;
  if (!["under_review", "open", "assigned", "in_progress", "unfilled"].includes(j.status)) return;
  const at = [j.location.lat, j.location.lng];
  j._marker = L.circleMarker(at, { radius: 8, color: "#1c2430", weight: j.sos ? 4 : 1, fillColor: JOB_COLOURS[j.status], fillOpacity: 0.9, className: "job" })
    .bindTooltip(`#${j.id} ${j.title} · ${j.status}`)
    .on("click", () => showJob(j.id))
    .addTo(layers.jobs);
  if (j.status === "open" && j.wave_radius_m) {
    j._circle = L.circle(at, { radius: j.wave_radius_m, color: "#e8590c", weight: 1, fillOpacity: 0.05, dashArray: "4 4", className: "wave" }).addTo(layers.waves);
  }
}

function countdown(j) {
  if (j.status !== "open" || !j.wave_deadline) return "";
  const s = Math.max(0, Math.round((Date.parse(j.wave_deadline) - Date.now()) / 1000));
  return `wave ${j.wave} · ${s}s`;
}

function renderBoards() {
  for (const status of ["open", "assigned", "in_progress", "unfilled"]) {
    const items = [...view.jobs.values()].filter((j) => j.status === status).sort((a, b) => b.id - a.id);
    $(`board-${status}`).replaceChildren(...items.map((j) => {
      const li = text("li", `#${j.id} ${j.title}`);
      li.dataset.job = j.id;
      if (j.sos) li.prepend(text("strong", "SOS "));
      const step = j.last_step ? ` · ${j.last_step.step}: ${j.last_step.outcome}` : "";
      li.append(text("span", countdown(j) + step, "countdown"));
      li.addEventListener("click", () => showJob(j.id));
      return li;
    }));
  }
  const live = [...view.jobs.values()].filter((j) => ["open", "assigned", "in_progress"].includes(j.status)).length;
  const free = [...view.workers.values()].filter((w) => w.state === "idle").length;
  $("counts").textContent = `${live} live jobs · ${free} free workers`;
}

function renderAlerts() {
  const open = [...view.alerts.values()].filter((a) => !a.acked_at).sort((a, b) => (SEVERITY[a.severity] - SEVERITY[b.severity]) || b.id - a.id);
  $("alerts").replaceChildren(...open.map((a) => {
    const li = text("li", "", a.severity);
    li.dataset.alert = a.id;
    li.append(text("span", `${a.severity.toUpperCase()} ${a.kind}${a.job_id ? ` · job #${a.job_id}` : ""}`, "what"));
    const ack = text("button", "Acknowledge", "quiet");
    ack.addEventListener("click", async () => {
      const done = await api.call("POST", `/v1/ops/alerts/${a.id}/ack`);
      view.alerts.set(a.id, done);
      renderAlerts();
    });
    li.append(ack);
    return li;
  }));
  $("alert-count").textContent = String(open.length);
  const urgent = open.filter((a) => SEVERITY[a.severity] <= 1).length;
  document.title = urgent ? `(${urgent}) ALERT · Dispatch console` : "Dispatch console";
}

function beep() {
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = 880;
    osc.connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.25);
  } catch { /* no sound here */ }
}

async function showJob(id) {
  const j = view.jobs.get(id);
  if (!j) return;
  view.shown = id;
  $("job-panel").hidden = false;
  $("job-title").textContent = `#${j.id} ${j.title}`;
  $("job-facts").textContent = `${j.status} · ${j.category} · wave ${j.wave}${j.worker_id ? ` · worker #${j.worker_id}` : ""}`;
  showLog(j.id);
  const found = await api.call("GET", `/v1/workers/nearby?lat=${j.location.lat}&lng=${j.location.lng}&radius_m=3000&community_id=${view.cid}&limit=10`);
  $("nearby").replaceChildren(...found.map((w) => {
    const li = text("li", `#${w.worker_id} ${w.name || ""} · ${Math.round(w.distance_m)} m `);
    const assign = text("button", "Assign", "quiet");
    assign.addEventListener("click", async () => {
      const done = await api.call("POST", `/v1/ops/jobs/${j.id}/assign`, { worker_id: w.worker_id });
      mergeJob({ id: done.id, status: done.status, worker_id: done.worker_id, wave_radius_m: null });
    });
    li.append(assign);
    return li;
  }));
}

async function showLog(id, tries = 3) {
  const logged = await api.call("GET", `/v1/ops/jobs/${id}/dispatch-log`).catch(() => ({ waves: [] }));
  if (!logged.waves.length && tries > 0) {  // a wave is logged just after it commits
    setTimeout(() => { if (view.shown === id) showLog(id, tries - 1); }, 700);
  }
  $("replay-result").textContent = "";
  $("dispatch-log").replaceChildren(...logged.waves.map((w) => {
    const li = text("li", `wave ${w.wave} · ${Math.round(w.radius_m)} m · ${new Date(w.sent_at).toLocaleTimeString()}`);
    // Each candidate in offer order, with its fair-ranking score by part (lower goes first).
    const score = (s) => s ? ` · score ${s.total.toFixed(2)} = distance ${s.distance.toFixed(2)} + rating ${s.rating.toFixed(2)} + reliability ${s.reliability.toFixed(2)} + exposure ${s.exposure.toFixed(2)} (${s.recent_offers} offers this hour)` : "";
    const who = [...w.offered].sort((a, b) => a.rank - b.rank).map((c) =>
      text("div", `${c.rank}. #${c.worker_id} ${Math.round(c.distance_m)} m ${c.picked ? (c.fate || "offered") : `(${c.why_not})`}${score(c.score)}`));
    const left = Object.entries(w.excluded).map(([k, v]) => `${k} ${v}`);
    if (who.length) li.append(...who); else li.append(text("div", "nobody in reach"));
    if (left.length) li.append(text("div", `left out: ${left.join(", ")}`));
    return li;
  }));
  $("replay").onclick = async () => {
    const r = await api.call("POST", `/v1/ops/jobs/${id}/replay`);
    $("replay-result").textContent = r.same ? "Today's ranking picks the same workers." : "Today's ranking would pick others: " + r.waves.map((w) => `wave ${w.wave}: ${w.picked.join(", ")}`).join("; ");
  };
}

// --- the verification queue and the outbox (read every few seconds) ------------------------

async function loadQueues() {
  const cid = view.cid;
  if (!cid) return;
  const [pending, sent] = await Promise.all([
    api.call("GET", `/v1/ops/communities/${cid}/verifications`),
    api.call("GET", `/v1/ops/communities/${cid}/outbox?limit=30`),
  ]).catch(() => [[], []]);
  $("verifications").replaceChildren(...pending.map((p) => {
    const li = text("li", `#${p.worker_id} ${p.name} · ${p.legal_name} · ID ${p.id_number_hint} `);
    li.dataset.worker = p.worker_id;
    const approve = text("button", "Approve", "quiet");
    approve.addEventListener("click", async () => {
      await api.call("POST", `/v1/ops/workers/${p.worker_id}/verify`);
      loadQueues();
    });
    li.append(approve);
    return li;
  }));
  $("outbox").replaceChildren(...sent.map((m) => text("li", `${m.kind} · job #${m.job_id} · ${m.channel}${m.via ? `→${m.via}` : ""} · ${m.status}`)));
}

// --- state from the snapshot, then the stream -------------------------------------------------

function mergeJob(change) {
  const j = view.jobs.get(change.id) || { id: change.id };
  Object.assign(j, change);
  if (change.lat !== undefined) j.location = { lat: change.lat, lng: change.lng };
  if (j.status !== "open") j.wave_radius_m = null;
  view.jobs.set(j.id, j);
  drawJob(j);
  renderBoards();
  cellsChanged();
  if (view.shown === j.id) {
    $("job-facts").textContent = `${j.status} · ${j.category} · wave ${j.wave}${j.worker_id ? ` · worker #${j.worker_id}` : ""}`;
  }
}

function apply(kind, data) {
  if (kind === "job") {
    const before = view.jobs.get(data.id);
    // Two transactions' events about one job can come in either order: each change of its
    // status or holder bumps `version`, each wave `wave`; older news changes nothing.
    if (before && before.version !== undefined && data.version !== undefined
        && (data.version < before.version || (data.version === before.version && data.wave < before.wave))) return;
    const askedBefore = (before && before.asked) || [];
    mergeJob(data);
    const j = view.jobs.get(data.id);
    j.asked = [...new Set([...askedBefore, ...(data.offered || [])])];
    for (const wid of data.offered || []) setState(wid, "offered");
    if (data.status !== "open") {  // its offers are over: whoever was asked and did not take it
      for (const wid of j.asked) if (wid !== data.worker_id) setState(wid, "idle");
      j.asked = [];
    }
    if (data.worker_id && data.status === "assigned") setState(data.worker_id, "assigned");
    if (data.worker_id && data.status === "in_progress") setState(data.worker_id, "on_site");
    if (data.worker_id && ["completed", "cancelled"].includes(data.status)) setState(data.worker_id, "idle");
  } else if (kind === "positions") {
    for (const p of data.workers) {
      const w = view.workers.get(p.id);
      if (!w) { view.unplaced.set(p.id, p); continue; }
      place(w, p);
      drawWorker(w);
    }
    cellsChanged();
  } else if (kind === "worker") {
    // Two requests' events about one worker can come in either order: the latest stamp wins.
    if (data.stamp <= (view.stamps.get(data.id) || 0)) return;
    view.stamps.set(data.id, data.stamp);
    let w = view.workers.get(data.id);
    if (!w && !data.online) return;
    if (!w) {
      w = { id: data.id, state: "idle" };
      view.workers.set(w.id, w);
    }
    Object.assign(w, { name: data.name, verification: data.verification, skills: data.skills, available: data.available });
    if (!w.location && data.lat !== null) {
      place(w, { ...data, at: data.at ? Date.parse(data.at) / 1000 : 0 });
    }
    const early = view.unplaced.get(w.id);  // a fix that came before the worker did
    view.unplaced.delete(w.id);
    if (early && (!w.location || early.at > w.fixAt)) place(w, early);
    if (!data.online && ["idle", "offered"].includes(w.state)) {  // gone off line, holding nothing
      if (w._marker) layers.workers.removeLayer(w._marker);
      view.workers.delete(w.id);
    } else {
      if (!data.online) w.state = "offline";
      else if (w.state === "offline") w.state = "idle";
      drawWorker(w);
    }
    cellsChanged();
  } else if (kind === "alert") {
    view.alerts.set(data.id, { ...data, acked_at: null });
    if (data.job_id && data.kind === "sos") mergeJob({ id: data.job_id, sos: true });
    renderAlerts();
    if (SEVERITY[data.severity] <= 1) beep();
  } else if (kind === "ladder_step") {
    const j = view.jobs.get(data.job_id);
    if (j) mergeJob({ id: j.id, last_step: { step: data.step, outcome: data.outcome, at: data.at } });
  }
}

function place(w, fix) {  // a fix: lat, lng, cell, at (epoch seconds)
  w.location = { lat: fix.lat, lng: fix.lng };
  w.cell = fix.cell;
  w.fixAt = fix.at;
}

function setState(workerId, state) {
  const w = view.workers.get(workerId);
  if (!w) return;
  w.state = state;
  drawWorker(w);
  cellsChanged();
}

async function watch(cid) {
  setupMap();
  if (view.source) view.source.close();
  view.cid = cid;
  view.jobs.clear(); view.workers.clear(); view.unplaced.clear(); view.stamps.clear(); view.alerts.clear(); view.cells.clear();
  Object.values(layers).forEach((l) => l.clearLayers());
  let snap;
  try {
    snap = await api.call("GET", `/v1/ops/communities/${cid}/snapshot`);
  } catch (err) {
    $("live").textContent = err.status === 403 ? "not your community" : `error: ${err.message}`;
    $("live").className = "pill off";
    return;
  }
  drawArea(snap.community);
  baseMap(snap.map_style_url);
  view.maxAge = snap.location_max_age_s;
  drawCells(snap.cells);
  for (const w of snap.workers) {
    w.fixAt = w.location_at ? Date.parse(w.location_at) / 1000 : 0;
    view.workers.set(w.id, w);
    drawWorker(w);
  }
  for (const j of snap.jobs) { view.jobs.set(j.id, j); drawJob(j); }
  for (const a of snap.alerts) view.alerts.set(a.id, a);
  renderBoards();
  renderAlerts();
  view.last = snap.event_id;
  connect();
  loadQueues();
}

async function connect() {
  // EventSource sends no headers: a one-minute stream token in the query, and on every
  // reconnect a fresh one with the last event seen, so nothing is missed.
  const cid = view.cid;
  const { token } = await api.call("POST", `/v1/ops/communities/${cid}/stream-token`);
  const source = new EventSource(`/v1/ops/communities/${cid}/events?token=${encodeURIComponent(token)}&after=${encodeURIComponent(view.last)}`);
  view.source = source;
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "pill on"; };
  source.onerror = () => {
    $("live").textContent = "reconnecting…";
    $("live").className = "pill off";
    source.close();
    if (view.source === source) setTimeout(connect, 1000);
  };
  for (const kind of ["job", "positions", "worker", "alert", "checkin", "ladder_step"]) {
    source.addEventListener(kind, (e) => {
      view.last = e.lastEventId || view.last;
      apply(kind, JSON.parse(e.data));
    });
  }
  source.addEventListener("resync", () => watch(cid));
}

setInterval(() => { if (view.cid) renderBoards(); }, 1000);  // the wave countdowns
setInterval(() => { if (view.cid) recount(); }, 5000);  // fixes age out of supply
setInterval(loadQueues, 10_000);
if (api.token) signedIn(api.token);
