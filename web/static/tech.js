// Technician page: today's stops in order, status steps, position sharing, live plan changes.
"use strict";
(() => {
  const list = document.getElementById("stops");
  const technicianId = list.dataset.technicianId;
  const jobId = list.dataset.jobId;
  const notice = document.getElementById("notice");
  const queueState = document.getElementById("queue-state");
  const mapBox = fo.makeMap(document.getElementById("map"));
  let stops = [];
  let parts = [];
  let me = null;

  // A scheduled stop is planned but not yet released to the phone (the dispatcher releases it).
  const NEXT = {
    dispatched: [["en_route", "Start travel"]],
    en_route: [["on_site", "Arrived"]],
  };

  function showNotice(text) {
    notice.textContent = text; notice.hidden = false;
  }

  function describeChange(before, after) {
    const name = (s) => s.site + " (job " + s.id + ")";
    const was = new Map(before.map((s) => [s.id, s]));
    const now = new Map(after.map((s) => [s.id, s]));
    const parts = [];
    after.filter((s) => !was.has(s.id)).forEach((s) => parts.push("New stop: " + name(s)));
    before.filter((s) => !now.has(s.id)).forEach((s) => parts.push("Removed: " + name(s)));
    const order = (xs) => xs.filter((s) => was.has(s.id) && now.has(s.id)).map((s) => s.id).join(",");
    if (order(before) !== order(after)) parts.push("The order of your stops changed");
    after.forEach((s) => {
      const old = was.get(s.id);
      if (old && old.eta && s.eta && Math.abs(new Date(old.eta) - new Date(s.eta)) >= 15 * 60000) {
        parts.push(name(s) + ": new ETA " + fo.fmtTime(s.eta));
      }
    });
    return parts;
  }

  function geoLink(s) {
    return "geo:" + s.lat + "," + s.lon + "?q=" + s.lat + "," + s.lon + "(" + encodeURIComponent(s.address) + ")";
  }

  function transition(stop, body, label) {
    body.to_status = body.to_status || "";
    stop.status = body.to_status;  // shown at once; the queue delivers it when the network allows
    render();
    fo.queue.push("/api/jobs/" + stop.id + "/transitions", body, label);
  }

  // What the technician has typed per job: forms are rebuilt on every reload (live events,
  // position updates), and must not lose it.
  const drafts = new Map();

  function completionForm(stop) {
    const draft = drafts.get(stop.id) || {};
    drafts.set(stop.id, draft);
    const form = fo.el("form", { class: "complete-form" });
    const finding = fo.el("select", { name: "finding", "aria-label": "Finding" });
    [["fault_confirmed", "Fault confirmed"], ["no_fault_found", "No fault found"], ["other", "Other"]]
      .forEach(([v, t]) => finding.appendChild(fo.el("option", { value: v }, t)));
    const part = fo.el("select", { name: "part", "aria-label": "Part used" });
    part.appendChild(fo.el("option", { value: "" }, "No parts used"));
    parts.forEach((p) => part.appendChild(fo.el("option", { value: p.sku }, p.sku + " " + p.name)));
    const qty = fo.el("input", { name: "quantity", type: "number", min: "1", value: "1", "aria-label": "Quantity" });
    const notes = fo.el("textarea", { name: "note", placeholder: "Notes", "aria-label": "Notes" });
    const done = fo.el("button", { type: "submit", class: "complete" }, "Completed");
    const fail = fo.el("button", { type: "button", class: "secondary unresolved" }, "Could not complete");
    [finding, part, qty, notes, done, fail].forEach((e) => form.appendChild(e));
    if (draft.finding) finding.value = draft.finding;
    if (draft.part) part.value = draft.part;
    if (draft.quantity) qty.value = draft.quantity;
    notes.value = draft.note || "";
    if (draft.needsReason) notes.placeholder = "Why could it not be completed?";
    const keep = () => Object.assign(draft, { finding: finding.value, part: part.value, quantity: qty.value, note: notes.value });
    form.addEventListener("input", keep);
    form.addEventListener("change", keep);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const used = part.value ? [{ sku: part.value, quantity: parseInt(qty.value, 10) || 1 }] : [];
      transition(stop, { to_status: "completed", finding: finding.value, parts_used: used, note: notes.value }, "Completed");
    });
    fail.addEventListener("click", () => {
      if (!notes.value.trim()) { draft.needsReason = true; notes.focus(); notes.placeholder = "Why could it not be completed?"; return; }
      transition(stop, { to_status: "unresolved", note: notes.value }, "Could not complete");
    });
    return form;
  }

  // Parts reserved for the job at a warehouse: collect them on the way (one line per warehouse).
  const COLLECT_BEFORE = ["scheduled", "dispatched", "en_route", "on_site"];
  const collected = new Set();  // "job:location" confirmed on this page, until the route reloads

  function pickupList(stop) {
    const byPlace = new Map();
    (stop.pickups || []).forEach((p) => {
      if (!byPlace.has(p.location_id)) byPlace.set(p.location_id, { name: p.location, lat: p.lat, lon: p.lon, items: [] });
      byPlace.get(p.location_id).items.push(p.quantity + " × " + p.sku);
    });
    const box = fo.el("ul", { class: "pickups" });
    byPlace.forEach((place, locationId) => {
      const li = fo.el("li", { class: "pickup" });
      li.appendChild(fo.el("span", {}, "Collect at " + place.name + ": " + place.items.join(", ")));
      const key = stop.id + ":" + locationId;
      if (collected.has(key)) {
        li.appendChild(fo.el("span", { class: "badge" }, "collected"));
      } else {
        const b = fo.el("button", { type: "button", class: "secondary collect" }, "Collected");
        b.addEventListener("click", () => {
          collected.add(key);
          render();
          fo.queue.push("/api/jobs/" + stop.id + "/pickup", { location_id: locationId }, "Parts collected");
        });
        li.appendChild(b);
      }
      box.appendChild(li);
    });
    return box;
  }

  function render() {
    const tpl = document.getElementById("stop-template");
    const focused = document.activeElement && list.contains(document.activeElement) && document.activeElement.name
      ? [document.activeElement.closest("li.stop").dataset.jobId, document.activeElement.name] : null;
    list.replaceChildren();
    if (mapBox) mapBox.layer.clearLayers();
    const points = [];
    stops.forEach((s, i) => {
      const li = tpl.content.firstElementChild.cloneNode(true);
      li.dataset.jobId = s.id;
      li.querySelector(".seq").textContent = i + 1;
      li.querySelector(".site").textContent = s.site;
      li.querySelector(".status").textContent = s.status.replace("_", " ");
      const a = li.querySelector(".address");
      a.textContent = s.address; a.href = geoLink(s);
      li.querySelector(".window").textContent = (s.windows || []).map((w) => fo.fmtTime(w.start) + "–" + fo.fmtTime(w.end)).join(", ");
      li.querySelector(".eta").textContent = s.eta || s.planned_arrival ? "ETA " + fo.fmtTime(s.eta || s.planned_arrival) : "";
      if ((s.pickups || []).length && COLLECT_BEFORE.includes(s.status)) li.querySelector(".times").after(pickupList(s));
      const actions = li.querySelector(".actions");
      (NEXT[s.status] || []).forEach(([to, label]) => {
        const b = fo.el("button", { type: "button", "data-to": to }, label);
        b.addEventListener("click", () => transition(s, { to_status: to, lat: me && me.lat, lon: me && me.lon }, label));
        actions.appendChild(b);
      });
      if (s.status === "on_site") actions.appendChild(completionForm(s));
      if (s.status === "scheduled") actions.appendChild(fo.el("p", { class: "planned" }, "Planned; not yet released to you"));
      if (["completed", "unresolved", "cancelled"].includes(s.status)) li.classList.add("done");
      list.appendChild(li);
      if (mapBox) {
        L.circleMarker([s.lat, s.lon], { radius: 9, color: "#0b5cad" }).bindTooltip(String(i + 1), { permanent: true }).addTo(mapBox.layer);
        points.push([s.lat, s.lon]);
      }
    });
    if (focused) {
      const again = list.querySelector("li.stop[data-job-id='" + focused[0] + "'] [name='" + focused[1] + "']");
      if (again) again.focus();
    }
    if (mapBox && me) {
      L.circleMarker([me.lat, me.lon], { radius: 7, color: "#c00", fillOpacity: 1 }).bindTooltip("You").addTo(mapBox.layer);
      points.push([me.lat, me.lon]);
    }
    if (mapBox && points.length) mapBox.map.fitBounds(points, { padding: [20, 20], maxZoom: 14 });
  }

  // Loads run one after another so that each compares against the stops the page shows.
  let loading = Promise.resolve();
  function load(announce) {
    loading = loading.then(() => loadNow(announce)).catch(() => {});
    return loading;
  }

  async function loadNow(announce) {
    const url = jobId ? "/api/jobs/" + jobId : "/api/technicians/" + technicianId + "/route";
    const res = await fo.api("GET", url);
    if (!res.ok) { showNotice((res.data && res.data.error) || "Could not load your route"); return; }
    const fresh = jobId ? [res.data] : res.data.stops;
    if (announce) {
      const changes = describeChange(stops, fresh);
      if (changes.length) showNotice("Plan changed: " + changes.join("; "));
    }
    stops = fresh;
    collected.clear();
    render();
  }

  fo.queue.onchange = (items) => {
    queueState.hidden = items.length === 0;
    queueState.textContent = items.length + " update(s) waiting to be sent";
  };
  fo.queue.onresult = (item, res) => {
    if (!res.ok) showNotice(item.label + " was refused: " + ((res.data && res.data.error) || res.status));
    if (!item.url.endsWith("/positions")) load(false);
  };

  function sharePosition() {
    if (!navigator.geolocation) return;
    let lastSent = 0;
    navigator.geolocation.watchPosition((pos) => {
      me = { lat: pos.coords.latitude, lon: pos.coords.longitude };
      const now = Date.now();
      if (now - lastSent < 30000) return;
      lastSent = now;
      // Only the newest position matters: drop older unsent ones before queueing.
      fo.queue.save(fo.queue.items().filter((i) => !i.url.endsWith("/positions")));
      fo.queue.push("/api/positions", me, "Position");
      render();
    }, () => {}, { enableHighAccuracy: true, maximumAge: 15000 });
  }

  fo.api("GET", "/api/parts").then((res) => { if (res.ok) parts = res.data; render(); });
  load(false).then(() => {
    fo.live("/events", (ev) => {
      if (ev.kind === "technician.position") return;
      load(true);
    });
  });
  sharePosition();
  fo.queue.onchange(fo.queue.items());
  fo.queue.flush();
})();
