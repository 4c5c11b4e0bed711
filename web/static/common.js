// Shared helpers: CSRF-aware fetch, an offline queue with idempotency keys, live events, maps.
"use strict";
const fo = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const QUEUE_KEY = "fieldops.queue";

  async function api(method, url, body, headers) {
    const opts = { method, credentials: "same-origin", headers: Object.assign({ "Accept": "application/json" }, headers || {}) };
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const resp = await fetch(url, opts);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, data };
  }

  function newKey() {
    const a = new Uint8Array(16); crypto.getRandomValues(a);
    return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Updates survive reloads and flaky networks: each carries its idempotency key, so a retry
  // after a lost answer is applied once by the server.
  const queue = {
    items() { try { return JSON.parse(localStorage.getItem(QUEUE_KEY) || "[]"); } catch (e) { return []; } },
    save(items) { localStorage.setItem(QUEUE_KEY, JSON.stringify(items)); queue.onchange(items); },
    onchange() {},
    onresult() {},
    busy: false,
    push(url, body, label) {
      const items = queue.items();
      items.push({ key: newKey(), url, body, label: label || url, attempts: 0 });
      queue.save(items);
      return queue.flush();
    },
    async flush() {
      if (queue.busy) return;
      queue.busy = true;
      try {
        let items = queue.items();
        while (items.length) {
          const item = items[0];
          let res;
          try {
            res = await api("POST", item.url, item.body, { "Idempotency-Key": item.key });
          } catch (e) {
            res = null;  // network down: keep it and retry later
          }
          if (res === null || res.status >= 500 || res.status === 0 || res.status === 429) {
            item.attempts += 1; queue.save(items);
            setTimeout(queue.flush, Math.min(30000, 1000 * 2 ** Math.min(item.attempts, 5)));
            return;
          }
          items = queue.items().filter((i) => i.key !== item.key);
          queue.save(items);
          queue.onresult(item, res);
        }
      } finally { queue.busy = false; }
    },
  };
  window.addEventListener("online", () => queue.flush());
  setInterval(() => queue.flush(), 15000);

  // Live updates over server-sent events. The browser reconnects by itself after a dropped
  // connection, but gives up for good on an error answer (a 503 while the database is down): then
  // the stream is opened again after a wait (1 s, doubling up to 30 s), from the last event seen,
  // so what was committed meanwhile still arrives.
  const LIVE_KINDS = ["job.created", "job.updated", "job.status", "plan.changed", "technician.position",
                      "device.status", "device.fault", "prediction", "dispatch.override"];

  function live(url, onEvent) {
    let lastId = "", waitMs = 1000, source = null, closed = false;
    function open() {
      if (closed) return;
      const from = lastId ? (url.includes("?") ? "&" : "?") + "last_event_id=" + encodeURIComponent(lastId) : "";
      source = new EventSource(url + from, { withCredentials: true });
      source.addEventListener("open", () => { waitMs = 1000; });
      source.addEventListener("error", () => {
        if (source.readyState !== EventSource.CLOSED) return;  // the browser retries by itself
        setTimeout(open, waitMs);
        waitMs = Math.min(2 * waitMs, 30000);
      });
      LIVE_KINDS.forEach((k) => source.addEventListener(k, (ev) => {
        if (ev.lastEventId) lastId = ev.lastEventId;
        onEvent(JSON.parse(ev.data));
      }));
    }
    open();
    return { close: () => { closed = true; source.close(); } };
  }

  function makeMap(el, center) {
    if (!el || typeof L === "undefined") return null;
    const map = L.map(el, { zoomControl: true, attributionControl: false }).setView(center || [48.14, 11.58], 11);
    const tiles = document.body.dataset.tileUrl;
    if (tiles) L.tileLayer(tiles, { maxZoom: 19 }).addTo(map);
    const layer = L.layerGroup().addTo(map);
    return { map, layer };
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toISOString().substring(11, 16);
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  return { api, queue, live, makeMap, fmtTime, el, newKey };
})();
