// The app's service worker: the shell (every page asset, Leaflet included) is cached on install
// and served cache-first, so the app opens with no network; the API is never cached. A push
// (Web Push, encrypted by the service with its VAPID key) is shown as a notification and handed
// to any open page; a tap on it opens the app at the offer.
"use strict";

const SHELL = "shell-v1";
const ASSETS = [
  "./", "index.html", "app.css", "app.js", "i18n.js", "manifest.json",
  "icons/icon.svg", "icons/icon-192.png", "icons/icon-512.png",
  "/ops/vendor/leaflet-1.9.4/leaflet.js", "/ops/vendor/leaflet-1.9.4/leaflet.css",
];

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(SHELL).then((c) => c.addAll(ASSETS)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil((async () => {
    for (const k of await caches.keys()) if (k !== SHELL) await caches.delete(k);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== location.origin || url.pathname.startsWith("/v1/")) return;
  e.respondWith((async () => {
    const cache = await caches.open(SHELL);
    const key = e.request.mode === "navigate" ? "./" : e.request;
    const hit = await cache.match(key, { ignoreSearch: e.request.mode === "navigate" });
    const fresh = fetch(e.request).then((r) => {
      if (r.ok && e.request.mode !== "navigate") cache.put(e.request, r.clone());
      return r;
    });
    if (hit) { fresh.catch(() => null); return hit; }  // cache first, refreshed behind
    return fresh;
  })());
});

self.addEventListener("push", (e) => {
  let m = {};
  try { m = e.data ? e.data.json() : {}; } catch { m = { body: e.data && e.data.text() }; }
  const offer = m.event && m.event.offer;
  const title = offer && offer.job ? offer.job.title : "邻里帮 / Neighbourhood help";
  e.waitUntil((async () => {
    await self.registration.showNotification(title, {
      body: m.body || "", tag: offer ? `offer-${offer.id}` : undefined,
      data: { offerId: offer ? offer.id : null, url: offer ? `/app/#offer-${offer.id}` : "/app/" },
      icon: "icons/icon-192.png", requireInteraction: !!offer,
    });
    for (const c of await self.clients.matchAll({ type: "window" })) c.postMessage({ type: "push", event: m.event });
  })());
});

self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  const data = e.notification.data || {};
  e.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: "window" });
    for (const c of open) {
      if (new URL(c.url).pathname.startsWith("/app/")) {
        c.postMessage({ type: "open-offer", offerId: data.offerId });
        return c.focus();
      }
    }
    return self.clients.openWindow(data.url || "/app/");
  })());
});
