// The residents' and workers' app: phone sign-in, then the resident's screens (post a job on a
// map pin, follow it, talk, confirm, review, see its money) or the worker's (online with the
// position reported, offers over the WebSocket with a countdown, jobs near me, the job's steps,
// the hours and calendar for bookings, reschedule requests, earnings and payouts). Plain
// browser JavaScript on the public API only, like the console: no build step, no CDN (Leaflet
// is the console's vendored copy), and the shell works offline (sw.js).
"use strict";

const t = (k, p) => i18n.t(k, p);
const $ = (id) => document.getElementById(id);
const el = (tag, attrs, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};
const uuid = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`);

const api = {
  token: localStorage.getItem("app-token"),
  role: localStorage.getItem("app-role"),
  async call(method, path, body, headers) {
    const h = { ...(headers || {}) };
    if (body !== undefined) h["Content-Type"] = "application/json";
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    const r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = r.status === 204 ? null : await r.json().catch(() => null);
    if (r.status === 401 && this.token) signOut();
    if (!r.ok) throw Object.assign(new Error((data && data.detail) || r.statusText), { status: r.status, code: data && data.code });
    return data;
  },
};

function toast(message) {
  $("toast").textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { $("toast").textContent = ""; }, 6000);
}
const failed = (err) => toast(t("error", { detail: err.message }));

// --- language ------------------------------------------------------------------------------

$("lang").addEventListener("click", () => {
  i18n.set(i18n.locale === "zh-CN" ? "en" : "zh-CN");
  tellLocale();
  rerender();
});

function tellLocale() {
  if (api.token) api.call("PUT", "/v1/me", { locale: i18n.locale }).catch(() => {});
}

// --- the network ----------------------------------------------------------------------------

function showNet() { $("net").hidden = navigator.onLine; }
addEventListener("online", showNet);
addEventListener("offline", showNet);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").catch((e) => console.warn("service worker", e));
  // A push shown by the service worker while this page is open: show its offer here too.
  navigator.serviceWorker.addEventListener("message", (e) => {
    const m = e.data || {};
    if (m.type === "push" && m.event) onEvent(m.event);
    if (m.type === "open-offer" && m.offerId) { worker.highlight = Number(m.offerId); renderOffers(); }
  });
}

// --- sign-in --------------------------------------------------------------------------------

let phone = "";
$("phone-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  phone = $("phone").value.trim();
  try {
    await api.call("POST", "/v1/auth/otp", { phone });
    $("code-form").hidden = false;
    $("code").focus();
  } catch (err) { failed(err); }
});

$("code-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const role = document.querySelector("input[name=role]:checked").value;
  try {
    const r = await api.call("POST", "/v1/auth/token", { phone, code: $("code").value, role });
    api.token = r.access_token;
    api.role = r.role;
    localStorage.setItem("app-token", api.token);
    localStorage.setItem("app-role", api.role);
    $("phone").value = "";
    $("code").value = "";
    tellLocale();
    enter();
  } catch (err) { failed(err); }
});

function signOut() {
  localStorage.removeItem("app-token");
  localStorage.removeItem("app-role");
  api.token = null;
  if (worker.socket) worker.socket.close();
  location.reload();
}
$("signout").addEventListener("click", signOut);

function enter() {
  $("signin").hidden = true;
  $("signout").hidden = false;
  if (api.role === "worker") startWorker();
  else startResident();
}

function rerender() {
  renderPresence();
  if (api.role === "worker") {
    $("offers").replaceChildren(); renderOffers(); renderWorkerJob(); renderNearby();
    renderHours(); renderCalendar(); renderReschedules(); renderEarnings(); renderPayouts();
  }
  else if (resident.open) renderResidentJob();
}

// --- position and map -------------------------------------------------------------------------

function position(options) {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) return reject(new Error("no geolocation"));
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lng: p.coords.longitude, accuracy_m: p.coords.accuracy }),
      (e) => reject(new Error(e.message || "position refused")),
      { enableHighAccuracy: true, timeout: 10000, ...(options || {}) },
    );
  });
}

function drawMap(id, community) {
  // No tile server (works offline): the community's outline on a plain background.
  const map = L.map(id, { attributionControl: false });
  map.setView([community.center.lat, community.center.lng], 15);
  const style = { color: "#0b6e4f", weight: 2, fill: true, fillOpacity: 0.04 };
  const shape = community.boundary && Array.isArray(community.boundary)
    ? L.polygon(community.boundary.map((p) => [p.lat, p.lng]), style)
    : L.circle([community.center.lat, community.center.lng], { ...style, radius: community.radius_m || 1000 });
  shape.addTo(map);
  map.fitBounds(shape.getBounds(), { padding: [10, 10] });
  return map;
}

async function communityHere() {
  const here = await position();
  const found = await api.call("GET", `/v1/communities?lat=${here.lat}&lng=${here.lng}`);
  return { here, community: found[0] || null };
}

// --- the resident -----------------------------------------------------------------------------

const resident = { community: null, map: null, pin: null, open: null, job: null, timer: null, chosen: null, lastMessage: 0 };

async function startResident() {
  $("resident").hidden = false;
  try {
    const { here, community } = await communityHere();
    if (!community) { $("r-community").textContent = t("no_community"); $("post-form").hidden = true; }
    else {
      resident.community = community;
      $("r-community").textContent = `${t("community")}: ${community.name}`;
      resident.map = drawMap("map", community);
      resident.pin = L.marker([here.lat, here.lng], { draggable: true }).addTo(resident.map);
      resident.map.on("click", (e) => resident.pin.setLatLng(e.latlng));
    }
  } catch (err) { failed(err); }
  await listMyJobs();
  const m = /#job-(\d+)/.exec(location.hash);
  if (m) openJob(Number(m[1]));
}

for (const r of document.querySelectorAll("input[name=mode]")) {
  r.addEventListener("change", () => { $("booking-fields").hidden = r.value !== "booking" || !r.checked; });
}

function pinPoint() {
  const p = resident.pin.getLatLng();
  return { lat: Number(p.lat.toFixed(6)), lng: Number(p.lng.toFixed(6)) };
}

$("find").addEventListener("click", async () => {
  const from = new Date($("p-from").value), to = new Date($("p-to").value);
  const at = pinPoint();
  const q = new URLSearchParams({ lat: at.lat, lng: at.lng, start: from.toISOString(), end: to.toISOString(),
    duration_min: $("p-duration").value, skill: $("p-category").value });
  try {
    const r = await api.call("GET", `/v1/bookings/candidates?${q}`);
    const list = $("candidates");
    list.replaceChildren();
    if (!r.candidates.length) list.append(el("li", {}, t("no_candidates")));
    for (const c of r.candidates) {
      const stars = c.rating === null ? t("no_rating") : `${c.rating.toFixed(1)}★ (${c.rating_count})`;
      // The first bookable starts, each one tap: that worker at that time.
      const starts = c.starts.slice(0, 4).map((iso) => el("button", {
        type: "button", class: "quiet start", "data-start": iso,
        onclick: (e) => chooseSlot(c, iso, e.currentTarget),
      }, new Date(iso).toLocaleString(i18n.locale, { weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })));
      list.append(el("li", { class: "candidate", "data-worker": c.worker_id },
        el("strong", {}, c.name), ` · ${stars} · ${t("away", { m: Math.round(c.distance_m) })}`,
        el("div", { class: "row" }, ...starts)));
    }
  } catch (err) { failed(err); }
});

function chooseSlot(c, iso, button) {
  resident.chosen = { worker_id: c.worker_id, start: new Date(iso) };
  for (const b of $("candidates").querySelectorAll("button.start")) b.classList.toggle("chosen", b === button);
  toast(t("slot_chosen", { name: c.name, when: button.textContent }));
}

$("post-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const mode = document.querySelector("input[name=mode]:checked").value;
  const category = $("p-category").value;
  const body = {
    title: $("p-title").value.trim(), category, skills: [category], location: pinPoint(), mode,
    price_cents: Math.round(Number($("p-price").value) * 100), community_id: resident.community.id,
  };
  if ($("p-address").value.trim()) body.address = $("p-address").value.trim();
  if ($("p-description").value.trim()) body.description = $("p-description").value.trim();
  if (mode === "booking") {
    body.duration_min = Number($("p-duration").value);
    body.window = { start: new Date($("p-from").value).toISOString(), end: new Date($("p-to").value).toISOString() };
    if (resident.chosen) {  // that worker, at the start chosen: the window is the slot itself
      const { start } = resident.chosen;
      body.worker_id = resident.chosen.worker_id;
      body.window = { start: start.toISOString(), end: new Date(start.getTime() + body.duration_min * 60000).toISOString() };
    }
  }
  try {
    const job = await api.call("POST", "/v1/jobs", body, { "Idempotency-Key": uuid() });
    $("post-form").reset();
    $("booking-fields").hidden = true;
    resident.chosen = null;
    await listMyJobs();
    openJob(job.id);
  } catch (err) { failed(err); }
});

async function listMyJobs() {
  try {
    const jobs = await api.call("GET", "/v1/jobs");
    const list = $("my-jobs");
    list.replaceChildren();
    if (!jobs.length) list.append(el("li", { class: "muted" }, t("no_jobs")));
    for (const j of jobs) {
      list.append(el("li", { "data-job": j.id },
        el("button", { type: "button", class: "row-button", onclick: () => openJob(j.id) },
          el("strong", {}, j.title), " ", el("span", { class: `pill s-${j.status}` }, t(`status_${j.status}`)))));
    }
  } catch (err) { failed(err); }
}

function openJob(id) {
  resident.open = id;
  resident.job = null;
  resident.lastMessage = 0;
  $("rj-messages").replaceChildren();
  location.hash = `job-${id}`;
  $("r-home").hidden = true;
  $("r-job").hidden = false;
  clearInterval(resident.timer);
  followJob();
  resident.timer = setInterval(followJob, 1500);
}

$("r-back").addEventListener("click", () => {
  clearInterval(resident.timer);
  resident.open = null;
  history.replaceState(null, "", location.pathname);
  $("r-job").hidden = true;
  $("r-home").hidden = false;
  listMyJobs();
});

async function followJob() {
  const id = resident.open;
  if (!id || !navigator.onLine) return;
  try {
    const job = await api.call("GET", `/v1/jobs/${id}`);
    if (resident.open !== id) return;
    const changed = !resident.job || resident.job.status !== job.status;
    resident.job = job;
    renderResidentJob();
    if (job.worker_id) await readMessages(job);
    if (changed) await readLedger(job);
  } catch (err) { if (err.status !== 404) failed(err); }
}

function notifiedCount(offers) {
  if (!offers) return 0;
  return ["pending", "accepted", "declined", "expired", "taken", "withdrawn"].reduce((n, k) => n + (offers[k] || 0), 0);
}

function renderResidentJob() {
  const job = resident.job;
  if (!job) return;
  $("rj-title").textContent = job.title;
  $("rj-status").textContent = t(`status_${job.status}`);
  $("rj-status").className = `status s-${job.status}`;
  $("rj-when").hidden = !job.scheduled_start;
  if (job.scheduled_start) $("rj-when").textContent = t("booking_at", { when: whenText(job.scheduled_start, job.scheduled_end) });
  const notified = notifiedCount(job.offers);
  $("rj-notified").textContent = notified ? t("notified", { n: notified }) : "";
  const w = job.worker;
  $("rj-taken").textContent = w
    ? t("taken_by", { name: w.name, rating: w.rating === null ? t("no_rating") : `${w.rating.toFixed(1)}★` }) : "";
  $("rj-approach").textContent = job.worker_approach && ["assigned"].includes(job.status)
    ? t("approach", { m: job.worker_approach.distance_m }) : "";
  $("rj-pin").hidden = !job.start_pin || job.status !== "assigned";
  $("rj-pin").textContent = job.start_pin ? t("start_pin", { pin: job.start_pin }) : "";
  $("rj-call").hidden = !job.proxy_number;
  if (job.proxy_number) {
    $("rj-tel").href = `tel:${job.proxy_number}`;
    $("rj-tel").textContent = t("call", { number: job.proxy_number });
  }
  const live = ["assigned", "in_progress"].includes(job.status);
  $("rj-confirm").hidden = job.status !== "completed";
  $("rj-cancel").hidden = !["open", "assigned", "under_review"].includes(job.status);
  $("rj-sos").hidden = !live;
  $("rj-talk").hidden = !job.worker_id || !["assigned", "in_progress", "completed"].includes(job.status);
  const reviewed = localStorage.getItem(`reviewed-${job.id}`);
  $("rj-review").hidden = job.status !== "confirmed" || !!reviewed;
  $("rj-reviewed").hidden = !reviewed;
}

async function readMessages(job) {
  const found = await api.call("GET", `/v1/jobs/${job.id}/messages?after_id=${resident.lastMessage}`);
  for (const m of found) {
    if (m.id <= resident.lastMessage) continue;  // two reads that crossed
    resident.lastMessage = m.id;
    $("rj-messages").append(el("li", { class: m.sender_id === job.resident_id ? "mine" : "theirs" }, m.text));
  }
}

async function readLedger(job) {
  try {
    const ledger = await api.call("GET", `/v1/jobs/${job.id}/ledger`);
    const list = $("rj-ledger");
    list.replaceChildren();
    if (job.pay) list.append(el("li", {}, el("strong", {}, t("you_pay", { amount: i18n.money(job.pay.total_cents, job.currency) }))));
    // What the escrow holds now: posted to it, and held there by pending transfers.
    const held = Object.values(ledger.balances).reduce((a, b) => a + b, 0);
    $("rj-escrow").textContent = t("in_escrow", { amount: i18n.money(held, job.currency) });
    for (const e of ledger.entries) {
      const what = i18n.has(`tx_${e.kind}`) ? t(`tx_${e.kind}`) : e.kind;
      list.append(el("li", { "data-kind": e.kind, "data-status": e.status },
        `${what} · ${i18n.money(e.amount_cents, e.currency)} · ${t(`tx_status_${e.status}`)}`));
    }
  } catch (err) { if (err.status !== 404) failed(err); }
}

$("rj-message-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("rj-message").value.trim();
  if (!text) return;
  try {
    await api.call("POST", `/v1/jobs/${resident.open}/messages`, { text });
    $("rj-message").value = "";
    await readMessages(resident.job);
  } catch (err) { failed(err); }
});

$("rj-confirm").addEventListener("click", async () => {
  try { await api.call("POST", `/v1/jobs/${resident.open}/confirm`); await followJob(); } catch (err) { failed(err); }
});

$("rj-cancel").addEventListener("click", async () => {
  const reason = prompt(t("cancel_reason"));
  if (!reason) return;
  try { await api.call("POST", `/v1/jobs/${resident.open}/cancel`, { reason }); await followJob(); } catch (err) { failed(err); }
});

$("rj-review").addEventListener("submit", async (e) => {
  e.preventDefault();
  const rating = Number(document.querySelector("input[name=stars]:checked").value);
  const body = { rating };
  if ($("rj-comment").value.trim()) body.comment = $("rj-comment").value.trim();
  try {
    await api.call("POST", `/v1/jobs/${resident.open}/reviews`, body);
    localStorage.setItem(`reviewed-${resident.open}`, "1");
    renderResidentJob();
  } catch (err) {
    if (err.code === "already_reviewed") localStorage.setItem(`reviewed-${resident.open}`, "1");
    failed(err);
  }
});

async function sos(jobId) {
  let at = null;
  try { at = await position({ timeout: 3000 }); } catch { /* an SOS goes out without a position too */ }
  try {
    await api.call("POST", `/v1/jobs/${jobId}/sos`, at ? { location: { lat: at.lat, lng: at.lng } } : {});
    toast(t("sos_sent"));
  } catch (err) { failed(err); }
}
$("rj-sos").addEventListener("click", () => sos(resident.open));

// --- the worker -------------------------------------------------------------------------------

const worker = {
  me: null, online: false, watch: null, points: [], last: null, socket: null, retry: 1000,
  offers: new Map(), job: null, safety: null, nearby: [], map: null, marks: null,
  // Opened from an offer's notification (`#offer-<id>`): that offer is marked when it arrives.
  highlight: Number((/#offer-(\d+)/.exec(location.hash) || [])[1]) || null,
  timers: [], calendar: null, reschedules: [], earnings: null, payouts: null, payoutTimer: null,
  amountEdited: false, lastMessage: 0,
};

async function startWorker() {
  $("worker").hidden = false;
  await loadProfile();
}

async function loadProfile() {
  try {
    worker.me = await api.call("GET", "/v1/workers/me");
  } catch (err) {
    if (err.status !== 404) return failed(err);
    worker.me = null;
  }
  const me = worker.me;
  $("profile-form").hidden = !!me;
  $("verify-form").hidden = !me || me.verification !== "unverified";
  $("w-pending").hidden = !me || me.verification !== "pending";
  $("w-home").hidden = !me || !me.verified;
  if (!me) {
    try {
      const { community } = await communityHere();
      worker.community = community;
      $("w-community").textContent = community ? `${t("community")}: ${community.name}` : t("no_community");
    } catch (err) { failed(err); }
  } else if (!me.verified) {
    setTimeout(loadProfile, 3000);  // until the community verifies
  } else if (!worker.started) {
    worker.started = true;
    connect();
    await Promise.all([findCurrentJob(), loadEarnings(), loadHours()]);
    loadBookings();
    worker.timers.push(setInterval(() => { if (worker.online) loadNearby(); }, 5000));
    worker.timers.push(setInterval(loadBookings, 30000));  // free time moves on; requests come
    worker.timers.push(setInterval(followWorkerJob, 2000));
    worker.timers.push(setInterval(renderOffers, 1000));  // the countdowns
  }
}

$("profile-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const skills = [...$("w-skills").querySelectorAll("input:checked")].map((i) => i.value);
  if (!worker.community) return toast(t("no_community"));
  try {
    await api.call("PUT", "/v1/workers/me", { name: $("w-name").value.trim(), skills, community_ids: [worker.community.id] });
    await loadProfile();
  } catch (err) { failed(err); }
});

$("verify-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api.call("POST", "/v1/workers/me/verification", { legal_name: $("w-legal").value.trim(), id_number: $("w-id").value.trim() });
    await loadProfile();
  } catch (err) { failed(err); }
});

$("w-online").addEventListener("click", () => (worker.online ? goOffline() : goOnline()));

async function goOnline() {
  try {
    await api.call("POST", "/v1/workers/me/presence", { status: "online" });
  } catch (err) { return failed(err); }
  worker.online = true;
  renderPresence();
  // The position while online: every fix kept, sent in batches (at once for the first one).
  if (navigator.geolocation) {
    worker.watch = navigator.geolocation.watchPosition(
      (p) => {
        worker.last = { lat: p.coords.latitude, lng: p.coords.longitude, accuracy_m: p.coords.accuracy };
        worker.points.push({ ...worker.last, recorded_at: new Date(p.timestamp || Date.now()).toISOString() });
        $("w-geo").hidden = true;
        if (worker.points.length === 1 && !worker.flushed) flushPoints();
      },
      () => { $("w-geo").hidden = false; },
      { enableHighAccuracy: true, maximumAge: 5000 },
    );
  }
  worker.flush = setInterval(flushPoints, 5000);
  loadNearby();
  subscribePush();
}

async function goOffline() {
  worker.online = false;
  if (worker.watch !== null) navigator.geolocation.clearWatch(worker.watch);
  clearInterval(worker.flush);
  await flushPoints();
  try { await api.call("POST", "/v1/workers/me/presence", { status: "offline" }); } catch (err) { failed(err); }
  renderPresence();
}

function renderPresence() {
  $("w-online").textContent = t(worker.online ? "go_offline" : "go_online");
  $("w-state").textContent = t(worker.online ? "online" : "offline");
  $("w-state").className = `pill ${worker.online ? "on" : ""}`;
}

async function flushPoints() {
  if (!worker.points.length || !navigator.onLine) return;
  const points = worker.points.splice(0, 500);
  try {
    await api.call("POST", "/v1/workers/me/locations", { points });
    worker.flushed = true;
  } catch (err) {
    if (err.status >= 500 || !err.status) worker.points.unshift(...points);  // try again later
  }
}

// Offers and job events over the WebSocket, reconnecting with backoff.
function connect() {
  const url = new URL("/v1/workers/me/stream", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("token", api.token);
  const socket = new WebSocket(url);
  worker.socket = socket;
  socket.onopen = () => { worker.retry = 1000; };
  socket.onmessage = async (m) => {
    // The greeting (with the pending offers) comes as a binary frame, the events as text.
    try { onEvent(JSON.parse(typeof m.data === "string" ? m.data : await m.data.text())); } catch (e) { console.warn("event", e); }
  };
  socket.onclose = () => {
    if (!api.token) return;
    setTimeout(connect, worker.retry);
    worker.retry = Math.min(worker.retry * 2, 30000);
  };
}

function onEvent(ev) {
  if (ev.payout_id) { loadEarnings(); return; }  // a payout paid or failed
  switch (ev.type) {
    case "hello":
      worker.offers = new Map(ev.offers.map((o) => [o.id, o]));
      break;
    case "offer":
      worker.offers.set(ev.offer.id, ev.offer);
      break;
    case "offer_taken":
    case "offer_withdrawn":
    case "offer_expired":
      if (worker.offers.has(ev.offer_id) && ev.type === "offer_taken") toast(t("taken_elsewhere"));
      worker.offers.delete(ev.offer_id);
      loadNearby();
      break;
    case "job_assigned":
    case "job_released":
      findCurrentJob();
      loadBookings();
      break;
    case "reschedule":
      loadBookings();
      return;
    default:
      return;
  }
  renderOffers();
}

function payLine(pay, currency) {
  if (!pay) return "";
  const deductions = pay.deductions.map((d) => i18n.money(d.cents, currency)).join(" + ") || i18n.money(0, currency);
  return t("you_get", { net: i18n.money(pay.net_cents, currency), price: i18n.money(pay.price_cents, currency), deductions });
}

function renderOffers() {
  const list = $("offers");
  if (!list || api.role !== "worker") return;
  const now = Date.now();
  const live = [...worker.offers.values()].filter((o) => new Date(o.expires_at).getTime() > now);
  for (const o of worker.offers.values()) if (!live.includes(o)) worker.offers.delete(o.id);
  const shown = new Set(live.map((o) => String(o.id)));
  for (const li of [...list.children]) if (!shown.has(li.dataset.offer)) li.remove();
  if (!live.length) { list.replaceChildren(el("li", { class: "muted empty" }, t("no_offers"))); return; }
  list.querySelector(".empty")?.remove();
  for (const o of live) {
    const left = Math.max(0, Math.round((new Date(o.expires_at).getTime() - now) / 1000));
    let li = list.querySelector(`li[data-offer='${o.id}']`);
    if (!li) {
      const job = o.job || {};
      li = el("li", { "data-offer": o.id, class: `offer${worker.highlight === o.id ? " highlight" : ""}` },
        el("strong", {}, job.title || `#${o.job_id}`), " ",
        el("span", { class: "pill" }, i18n.money(job.price_cents || 0, job.currency || "CNY")),
        el("p", { class: "muted" }, `${t("away", { m: Math.round(o.distance_m / 50) * 50 })} · ${payLine(job.pay, job.currency)}`),
        job.scheduled_start ? el("p", { class: "when" }, t("booking_at", { when: whenText(job.scheduled_start, job.scheduled_end) })) : null,
        el("p", { class: "countdown" }),
        el("div", { class: "row" },
          el("button", { type: "button", class: "big take", onclick: () => takeOffer(o) }, t("take")),
          el("button", { type: "button", class: "quiet pass", onclick: () => passOffer(o) }, t("pass"))));
      list.append(li);
    }
    li.classList.toggle("highlight", worker.highlight === o.id);
    if (worker.highlight === o.id && !li.dataset.shown) { li.dataset.shown = "1"; li.scrollIntoView({ block: "center" }); }
    li.querySelector(".countdown").textContent = left > 90 ? t("minutes_left", { m: Math.ceil(left / 60) }) : t("seconds_left", { s: left });
  }
}

async function takeOffer(o) {
  try {
    const job = await api.call("POST", `/v1/offers/${o.id}/accept`, undefined, { "Idempotency-Key": uuid() });
    worker.offers.delete(o.id);
    setWorkerJob(job);
    if (job.mode === "booking") loadBookings();
  } catch (err) {
    worker.offers.delete(o.id);
    toast(err.status === 409 ? t("taken_elsewhere") : t("error", { detail: err.message }));
  }
  renderOffers();
}

async function passOffer(o) {
  worker.offers.delete(o.id);
  renderOffers();
  try { await api.call("POST", `/v1/offers/${o.id}/decline`); } catch (err) { if (err.status !== 410) failed(err); }
}

// Jobs near me: the open jobs this worker may take, as a list and on the map.
async function loadNearby() {
  if (!worker.online || !navigator.onLine) return;
  try {
    worker.nearby = await api.call("GET", "/v1/workers/me/jobs-nearby");
    if (!Array.isArray(worker.nearby)) worker.nearby = worker.nearby.jobs || [];
  } catch (err) {
    worker.nearby = [];
    if (err.status !== 409 && err.status !== 404) failed(err);
  }
  renderNearby();
}

function renderNearby() {
  const list = $("nearby");
  list.replaceChildren();
  if (!worker.nearby.length) list.append(el("li", { class: "muted" }, t("no_nearby")));
  for (const j of worker.nearby) {
    list.append(el("li", { "data-job": j.id },
      el("strong", {}, j.title), " ", el("span", { class: "pill" }, i18n.money(j.price_cents, j.currency)),
      el("p", { class: "muted" }, `${t("away", { m: Math.round(j.distance_m) })} · ${payLine(j.pay, j.currency)}`),
      el("button", { type: "button", class: "take", onclick: () => takeFromBoard(j) }, t("take"))));
  }
  if (!worker.map && worker.last) {
    worker.map = L.map("w-map", { attributionControl: false }).setView([worker.last.lat, worker.last.lng], 14);
    worker.marks = L.layerGroup().addTo(worker.map);
  }
  if (worker.map) {
    worker.marks.clearLayers();
    if (worker.last) L.circleMarker([worker.last.lat, worker.last.lng], { radius: 7, color: "#0b6e4f" }).addTo(worker.marks);
    for (const j of worker.nearby) {
      const at = j.approx_location || j.location;
      if (at) L.circleMarker([at.lat, at.lng], { radius: 9, color: "#e8590c" }).bindTooltip(j.title).addTo(worker.marks);
    }
  }
}

async function takeFromBoard(j) {
  try {
    const job = await api.call("POST", `/v1/jobs/${j.id}/take`, undefined, { "Idempotency-Key": uuid() });
    setWorkerJob(job);
  } catch (err) {
    toast(err.status === 409 ? t("taken_elsewhere") : t("error", { detail: err.message }));
  }
  loadNearby();
}

// The job in hand: navigation, arrival, PIN, periodic check-ins, completion, SOS.
async function findCurrentJob() {
  try {
    const jobs = await api.call("GET", "/v1/jobs");
    // Work in progress first, then a job for now, then the next booking.
    const when = (j) => (j.status === "in_progress" ? 0 : j.scheduled_start ? new Date(j.scheduled_start).getTime() : 1);
    const live = jobs.filter((j) => ["assigned", "in_progress"].includes(j.status)).sort((a, b) => when(a) - when(b));
    setWorkerJob(live[0] || null);
  } catch (err) { failed(err); }
}

function setWorkerJob(job) {
  if ((job && job.id) !== (worker.job && worker.job.id)) {
    worker.lastMessage = 0;
    $("wj-messages").replaceChildren();
  }
  worker.job = job;
  renderWorkerJob();
  if (job) readWorkerMessages();
}

async function readWorkerMessages() {
  const job = worker.job;
  if (!job) return;
  const found = await api.call("GET", `/v1/jobs/${job.id}/messages?after_id=${worker.lastMessage}`);
  if (!worker.job || worker.job.id !== job.id) return;
  for (const m of found) {
    if (m.id <= worker.lastMessage) continue;
    worker.lastMessage = m.id;
    $("wj-messages").append(el("li", { class: m.sender_id === job.worker_id ? "mine" : "theirs" }, m.text));
  }
}

$("wj-message-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("wj-message").value.trim();
  if (!text || !worker.job) return;
  try {
    await api.call("POST", `/v1/jobs/${worker.job.id}/messages`, { text });
    $("wj-message").value = "";
    await readWorkerMessages();
  } catch (err) { failed(err); }
});

async function followWorkerJob() {
  if (!worker.job || !navigator.onLine) return;
  try {
    const id = worker.job.id;
    const [job, safety] = await Promise.all([
      api.call("GET", `/v1/jobs/${id}`),
      api.call("GET", `/v1/jobs/${id}/safety`).catch(() => null),
    ]);
    worker.safety = safety;
    if (!["assigned", "in_progress"].includes(job.status)) { setWorkerJob(null); loadEarnings(); }
    else setWorkerJob(job);
  } catch (err) { if (err.status === 403 || err.status === 404) worker.job = null; }
}

function renderWorkerJob() {
  const job = worker.job;
  $("w-job").hidden = !job;
  if (!job) return;
  const s = worker.safety;
  $("wj-title").textContent = `${job.title} · ${i18n.money(job.price_cents, job.currency)}`;
  $("wj-status").textContent = t(`status_${job.status}`);
  $("wj-address").textContent = job.address || `${job.location.lat.toFixed(5)}, ${job.location.lng.toFixed(5)}`;
  $("wj-when").hidden = !job.scheduled_start;
  if (job.scheduled_start) $("wj-when").textContent = t("booking_at", { when: whenText(job.scheduled_start, job.scheduled_end) });
  $("wj-nav").href = `https://www.openstreetmap.org/directions?route=%3B${job.location.lat}%2C${job.location.lng}`;
  $("wj-tel").hidden = !job.proxy_number;
  if (job.proxy_number) { $("wj-tel").href = `tel:${job.proxy_number}`; $("wj-tel").textContent = t("call", { number: job.proxy_number }); }
  const arrived = !!(s && s.arrived_at) || job.status === "in_progress";
  $("wj-arrive").hidden = job.status !== "assigned" || arrived;
  $("wj-start").hidden = job.status !== "assigned" || !arrived;
  $("wj-complete").hidden = job.status !== "in_progress";
  const due = s && s.next_checkin_due && new Date(s.next_checkin_due).getTime() - Date.now() < 5 * 60000;
  $("wj-due").hidden = !due;
  $("wj-periodic").hidden = job.status !== "in_progress" || !(s && s.requires_checkins);
}

async function here() {
  try { return await position({ maximumAge: 10000 }); } catch { return worker.last; }
}

$("wj-arrive").addEventListener("click", async () => {
  const at = await here();
  try {
    await api.call("POST", `/v1/jobs/${worker.job.id}/checkins`, { kind: "arrival", location: { lat: at.lat, lng: at.lng } });
    toast(t("arrived_ok"));
    await followWorkerJob();
  } catch (err) { failed(err); }
});

$("wj-start").addEventListener("submit", async (e) => {
  e.preventDefault();
  const at = await here();
  try {
    const job = await api.call("POST", `/v1/jobs/${worker.job.id}/start`, {
      pin: $("wj-pin").value.trim(), location: { lat: at.lat, lng: at.lng }, assignment_version: worker.job.assignment_version,
    });
    $("wj-pin").value = "";
    if (job && job.id) worker.job = job;
    await followWorkerJob();
  } catch (err) { failed(err); }
});

$("wj-periodic").addEventListener("click", async () => {
  const at = await here();
  try {
    await api.call("POST", `/v1/jobs/${worker.job.id}/checkins`, { kind: "periodic", location: { lat: at.lat, lng: at.lng } });
    toast(t("checked_in_ok"));
    await followWorkerJob();
  } catch (err) { failed(err); }
});

$("wj-complete").addEventListener("click", async () => {
  try {
    await api.call("POST", `/v1/jobs/${worker.job.id}/complete`, { assignment_version: worker.job.assignment_version });
    worker.job = null;
    renderWorkerJob();
    loadEarnings();
  } catch (err) { failed(err); }
});

$("wj-sos").addEventListener("click", () => sos(worker.job.id));

// A problem in the reader's language by its code (with the day or date it is about), else its
// detail as the service wrote it.
const whereOf = (err) => (/^(mon|tue|wed|thu|fri|sat|sun|\d{4}-\d{2}-\d{2}): /.exec(err.message || "") || [])[1];
function problem(err) {
  const key = `err_${err.code}`;
  if (!err.code || !i18n.has(key)) return t("error", { detail: err.message });
  const where = whereOf(err);
  return where ? t("about", { where: DAYS.includes(where) ? t(`day_${where}`) : where, message: t(key) }) : t(key);
}

// --- bookings: the hours, the next 7 days, reschedule requests ------------------------------------

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_MS = 86400000;
const hours = { set: false, tz: null, weekly: {}, overrides: [], slots: [], home: null };

// Times are shown in the worker's timezone (their availability's), whatever the phone's.
const zone = () => hours.tz || undefined;
const fmt = (d, opts, tz) => new Intl.DateTimeFormat(i18n.locale, { timeZone: tz || zone(), ...opts }).format(new Date(d));
const clock = (d) => fmt(d, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const dayName = (d, tz) => fmt(d, { weekday: "short", month: "numeric", day: "numeric" }, tz);
const dayKey = (d) => new Intl.DateTimeFormat("en-CA", { timeZone: zone(), year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date(d));
const minuteOfDay = (d) => {
  const [h, m] = new Intl.DateTimeFormat("en-GB", { timeZone: zone(), hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(d)).split(":");
  return Number(h) * 60 + Number(m);
};
function clockSpan(start, end) {
  const s = new Date(start), e = new Date(end);
  let to = clock(e);
  if (dayKey(e) !== dayKey(s)) to = to === "00:00" && e - s <= DAY_MS ? "24:00" : `${dayName(e)} ${to}`;
  return `${clock(s)}–${to}`;
}
const whenText = (start, end) => `${dayName(start)} ${clockSpan(start, end)}`;

// A range as the time inputs hold it ("24:00" cannot be typed: midnight as an end is "00:00").
const shown = (r) => ({ start: r.start, end: r.end === "24:00" ? "00:00" : r.end });
const wire = (r) => ({ start: r.start, end: r.end === "00:00" ? "24:00" : r.end });

async function loadHours() {
  try { fillHours(await api.call("GET", "/v1/workers/me/availability")); }
  catch (err) { if (err.status === 404) fillHours(null); else failed(err); }
}

function fillHours(av) {
  hours.set = !!av;
  hours.tz = av ? av.timezone : null;
  for (const d of DAYS) hours.weekly[d] = [];
  for (const w of av ? av.weekly : []) if (hours.weekly[w.day]) hours.weekly[w.day].push(shown(w));
  hours.overrides = av ? av.overrides.map((o) => ({ date: o.date, slots: o.slots.map(shown) })) : [];
  hours.slots = av ? av.slots : [];
  hours.home = av ? av.home : null;
  $("av-buffer").value = av ? av.buffer_min : 15;
  $("av-notice").value = av ? av.min_notice_min : 120;
  $("av-max").value = av && av.max_jobs_per_day !== null ? av.max_jobs_per_day : "";
  $("av-radius").value = av && av.travel_radius_m !== null ? av.travel_radius_m / 1000 : "";
  renderHours();
}

function rangeRow(list, r) {
  const input = (key) => el("input", { type: "time", required: true, value: r[key], class: key, "aria-label": t(`${key}_time`),
    oninput: (e) => { r[key] = e.target.value; } });
  return el("div", { class: "range" }, input("start"), "–", input("end"),
    el("button", { type: "button", class: "quiet remove", "aria-label": t("remove"), title: t("remove"),
      onclick: () => { list.splice(list.indexOf(r), 1); renderHours(); } }, "×"));
}

function addButton(list) {
  return el("button", { type: "button", class: "quiet add", onclick: () => { list.push({ start: "09:00", end: "18:00" }); renderHours(); } }, t("add_range"));
}

function renderHours() {
  if (!hours.weekly.mon) return;
  $("av-unset").hidden = hours.set;
  $("av-tz").textContent = hours.tz ? t("times_in", { tz: hours.tz }) : "";
  $("av-weekly").replaceChildren(...DAYS.map((d) => {
    const list = hours.weekly[d];
    return el("div", { class: "day", "data-day": d },
      el("div", { class: "day-head" }, el("strong", {}, t(`day_${d}`)), addButton(list)),
      ...(list.length ? list.map((r) => rangeRow(list, r)) : [el("p", { class: "muted small" }, t("not_working"))]));
  }));
  $("av-overrides").replaceChildren(...hours.overrides.map((o) => el("li", { class: "override" },
    el("div", { class: "row" },
      el("input", { type: "date", required: true, value: o.date, "aria-label": t("date"), oninput: (e) => { o.date = e.target.value; } }),
      el("button", { type: "button", class: "quiet remove", onclick: () => { hours.overrides.splice(hours.overrides.indexOf(o), 1); renderHours(); } }, t("remove"))),
    ...(o.slots.length ? o.slots.map((r) => rangeRow(o.slots, r)) : [el("p", { class: "muted small day-off" }, t("day_off"))]),
    addButton(o.slots))));
  renderHome();
}

function renderHome() {
  $("av-home").textContent = hours.home ? `${hours.home.lat.toFixed(5)}, ${hours.home.lng.toFixed(5)}` : t("home_unset");
}

$("av-add-override").addEventListener("click", () => {
  hours.overrides.push({ date: dayKey(Date.now() + DAY_MS), slots: [] });  // tomorrow, off
  renderHours();
});

$("av-home-here").addEventListener("click", async () => {
  try {
    const at = await position();
    hours.home = { lat: Number(at.lat.toFixed(6)), lng: Number(at.lng.toFixed(6)) };
    renderHome();
    toast(t("home_set"));
  } catch (err) { failed(err); }
});

$("hours-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const num = (id) => ($(id).value === "" ? null : Number($(id).value));
  const radius = num("av-radius");
  const body = {
    weekly: DAYS.flatMap((d) => hours.weekly[d].map((r) => ({ day: d, ...wire(r) }))),
    overrides: hours.overrides.map((o) => ({ date: o.date, slots: o.slots.map(wire) })),
    slots: hours.slots,
    buffer_min: num("av-buffer"),
    min_notice_min: num("av-notice"),
    max_jobs_per_day: num("av-max"),
    travel_radius_m: radius === null ? null : Math.round(radius * 1000),
  };
  if (hours.tz) body.timezone = hours.tz;
  if (hours.home) body.home = hours.home;
  $("av-error").hidden = true;
  for (const b of $("hours-form").querySelectorAll(".bad")) b.classList.remove("bad");
  $("av-save").disabled = true;
  try {
    fillHours(await api.call("PUT", "/v1/workers/me/availability", body));
    toast(t("saved"));
    loadBookings();
  } catch (err) {
    $("av-error").textContent = problem(err);
    $("av-error").hidden = false;
    const where = whereOf(err);  // mark the day or date it is about
    const bad = DAYS.includes(where) ? $("av-weekly").querySelector(`[data-day=${where}]`)
      : [...$("av-overrides").children].find((li) => li.querySelector("input[type=date]").value === where);
    if (bad) bad.classList.add("bad");
  } finally { $("av-save").disabled = false; }
});

async function loadBookings() {
  if (!navigator.onLine) return;
  const from = new Date();
  const q = new URLSearchParams({ from: from.toISOString(), to: new Date(from.getTime() + 7 * DAY_MS).toISOString() });
  try {
    const [cal, jobs] = await Promise.all([api.call("GET", `/v1/workers/me/calendar?${q}`), api.call("GET", "/v1/jobs")]);
    worker.calendar = cal;
    worker.reschedules = jobs.filter((j) => j.status === "assigned" && j.reschedule && j.reschedule.status === "pending");
  } catch (err) { return failed(err); }
  renderCalendar();
  renderReschedules();
}

// The next 7 days in the worker's timezone: a strip of the day (free green, booked blue) and
// the same as lines.
function renderCalendar() {
  const cal = worker.calendar;
  if (!cal) return;
  $("cal-tz").textContent = hours.set ? t("times_in", { tz: hours.tz }) : t("hours_not_set");
  const now = Date.now();
  const days = [];
  for (let k = 0; k < 8 && days.length < 7; k++) { const key = dayKey(now + k * DAY_MS); if (!days.includes(key)) days.push(key); }
  const items = [...cal.bookings.map((b) => ({ start: b.start, end: b.end, booking: b })), ...cal.free]
    .sort((a, b) => new Date(a.start) - new Date(b.start));
  const dayOf = (i) => (dayKey(i.start) < days[0] ? days[0] : dayKey(i.start));
  $("w-calendar").replaceChildren(...days.map((key) => {
    const mine = items.filter((i) => dayOf(i) === key);
    const strip = el("div", { class: "strip", "aria-hidden": "true" });
    for (const i of mine) {
      const a = dayKey(i.start) === key ? minuteOfDay(i.start) : 0;
      const z = dayKey(i.end) === key ? minuteOfDay(i.end) : 1440;
      const bar = el("span", { class: i.booking ? "busy" : "free" });
      bar.style.left = `${(a / 14.4).toFixed(2)}%`;
      bar.style.width = `${(Math.max(z - a, 0) / 14.4).toFixed(2)}%`;
      strip.append(bar);
    }
    const lines = mine.map((i) => (i.booking
      ? el("li", { class: "booked", "data-job": i.booking.job_id },
        t("cal_booking", { span: clockSpan(i.start, i.end), title: i.booking.title }) + (i.booking.address ? ` · ${i.booking.address}` : ""))
      : el("li", { class: "free-time" }, t("cal_free", { span: clockSpan(i.start, i.end) }))));
    return el("li", { "data-day": key }, el("strong", {}, dayName(`${key}T12:00:00Z`, "UTC")), strip,
      el("ul", {}, ...(lines.length ? lines : [el("li", { class: "muted" }, t("cal_nothing"))])));
  }));
}

function renderReschedules() {
  const list = worker.reschedules || [];
  $("w-reschedules").hidden = !list.length;
  $("w-reschedule-list").replaceChildren(...list.map((j) => el("li", { "data-job": j.id },
    el("strong", {}, j.title),
    el("p", {}, t("reschedule_asked", { from: whenText(j.scheduled_start, j.scheduled_end), to: whenText(j.reschedule.start, j.reschedule.end) })),
    el("div", { class: "row" },
      el("button", { type: "button", class: "accept", onclick: () => answerReschedule(j, true) }, t("accept")),
      el("button", { type: "button", class: "quiet decline", onclick: () => answerReschedule(j, false) }, t("decline"))))));
}

async function answerReschedule(j, yes) {
  try {
    await api.call("POST", `/v1/jobs/${j.id}/reschedule/${yes ? "accept" : "decline"}`);
    toast(t(yes ? "reschedule_accepted" : "reschedule_declined"));
  } catch (err) { toast(problem(err)); }
  loadBookings();
  findCurrentJob();  // its slot may have moved
}

// --- money: earnings and payouts --------------------------------------------------------------------

async function loadEarnings() {
  try {
    worker.earnings = await api.call("GET", "/v1/workers/me/earnings");
    renderEarnings();
  } catch (err) { if (err.status !== 404) failed(err); }
  await loadPayouts();
}

function renderEarnings() {
  const e = worker.earnings;
  if (!e) return;
  const m = (cents) => i18n.money(cents, e.currency);
  $("w-balance").textContent = t("balance", { released: m(e.payable_cents), pending: m(e.pending_cents) });
  $("w-paid-out").textContent = t("paid_out", { paid: m(e.paid_out_cents), in_payout: m(e.in_payout_cents) });
  $("w-earnings").replaceChildren(...e.items.map((i) => el("li", {}, `${i.title} · ${m(i.pay.net_cents)} · ${i.money}`)));
  $("po-amount").max = (e.payable_cents / 100).toFixed(2);
  if (!worker.amountEdited) $("po-amount").value = (e.payable_cents / 100).toFixed(2);  // all of it
  $("po-request").disabled = e.payable_cents <= 0;
}

async function loadPayouts() {
  try { worker.payouts = await api.call("GET", "/v1/workers/me/payouts"); } catch (err) { if (err.status !== 404) failed(err); return; }
  renderPayouts();
  clearTimeout(worker.payoutTimer);
  if (worker.payouts.some((p) => p.status === "pending")) worker.payoutTimer = setTimeout(loadEarnings, 2000);
}

function renderPayouts() {
  const list = worker.payouts;
  if (!list) return;
  const at = (d) => fmt(d, { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  $("w-payouts").replaceChildren(...(list.length ? list.map((p) => el("li", { "data-payout": p.id, class: `payout p-${p.status}` },
    `${i18n.money(p.amount_cents, p.currency)} · `, el("span", { class: "pill" }, t(`payout_${p.status}`)), ` · ${at(p.created_at)}`))
    : [el("li", { class: "muted" }, t("no_payouts"))]));
}

$("po-amount").addEventListener("input", () => { worker.amountEdited = true; });

$("payout-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { amount_cents: Math.round(Number($("po-amount").value) * 100), currency: worker.earnings ? worker.earnings.currency : "CNY" };
  $("po-request").disabled = true;
  try {
    await api.call("POST", "/v1/workers/me/payouts", body, { "Idempotency-Key": uuid() });
    worker.amountEdited = false;
    toast(t("payout_requested"));
  } catch (err) { toast(problem(err)); }
  await loadEarnings();
});

// Web Push: subscribe through the service worker with the service's VAPID key, then register
// the subscription; without a key (404 push_disabled) the app lives on the WebSocket and SMS.
function urlBase64ToBytes(s) {
  const raw = atob((s + "=".repeat((4 - (s.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

async function subscribePush() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return null;
  try {
    const { key } = await api.call("GET", "/v1/push/vapid-public-key");
    if (Notification.permission === "default") await Notification.requestPermission();
    if (Notification.permission !== "granted") return null;
    const registration = await navigator.serviceWorker.ready;
    let sub = await registration.pushManager.getSubscription();
    if (!sub) sub = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: urlBase64ToBytes(key) });
    const json = sub.toJSON();
    await api.call("POST", "/v1/workers/me/push-subscriptions", { endpoint: json.endpoint, keys: json.keys });
    return json;
  } catch (err) {
    console.warn("push subscription", err);  // no push service reachable: stream and SMS only
    return null;
  }
}

// --- start ------------------------------------------------------------------------------------

i18n.apply();
showNet();
renderPresence();
if (api.token && api.role) enter();
