// Dispatcher console: map, timelines, unassigned and at-risk jobs, overrides, KPIs, live updates.
"use strict";
(() => {
  const mapBox = fo.makeMap(document.getElementById("map"));
  const techMarkers = new Map();
  let technicians = [];
  let jobs = [];
  let plan = null;
  const STATUS_COLOR = { new: "#c00", scheduled: "#0b5cad", dispatched: "#0b5cad", en_route: "#d98c00",
                         on_site: "#7a3db8", completed: "#2a8a2a", unresolved: "#555", cancelled: "#999" };
  const OPEN = ["new", "scheduled", "dispatched", "en_route", "on_site"];

  function renderMap() {
    if (!mapBox) return;
    mapBox.layer.clearLayers(); techMarkers.clear();
    const pts = [];
    jobs.forEach((j) => {
      L.circleMarker([j.lat, j.lon], { radius: 12 - 2 * j.priority, color: STATUS_COLOR[j.status] || "#333", fillOpacity: 0.6 })
        .bindTooltip("Job " + j.id + " · P" + j.priority + " · " + j.status).addTo(mapBox.layer);
      pts.push([j.lat, j.lon]);
    });
    technicians.forEach((t) => {
      const lat = t.lat ?? t.home_lat, lon = t.lon ?? t.home_lon;
      const m = L.circleMarker([lat, lon], { radius: 6, color: "#000", fillColor: "#fff", fillOpacity: 1, className: "technician-" + t.id })
        .bindTooltip(t.name).addTo(mapBox.layer);
      techMarkers.set(t.id, m); pts.push([lat, lon]);
    });
    if (pts.length) mapBox.map.fitBounds(pts, { padding: [20, 20], maxZoom: 13 });
  }

  // Drag a job (an unassigned one or a timeline segment) onto a technician's timeline: it moves
  // there, at the place among that technician's stops where it was dropped.
  function draggable(el, jobId) {
    el.draggable = true;
    el.addEventListener("dragstart", (ev) => ev.dataTransfer.setData("text/plain", String(jobId)));
  }

  function dropTarget(bar, technicianId) {
    bar.addEventListener("dragover", (ev) => { ev.preventDefault(); bar.classList.add("drop"); });
    bar.addEventListener("dragleave", () => bar.classList.remove("drop"));
    bar.addEventListener("drop", (ev) => {
      ev.preventDefault(); bar.classList.remove("drop");
      const jobId = parseInt(ev.dataTransfer.getData("text/plain"), 10);
      const x = ev.clientX - bar.getBoundingClientRect().left;
      const before = Array.from(bar.querySelectorAll(".seg"))
        .filter((seg) => Number(seg.dataset.jobId) !== jobId && seg.offsetLeft + seg.offsetWidth / 2 < x).length;
      sendOverride({ job_id: jobId, technician_id: technicianId, action: "move", position: before, force: false });
    });
  }

  function renderTimelines() {
    const box = document.getElementById("timelines");
    box.replaceChildren();
    const span = 14 * 3600000;  // 06:00 to 20:00 UTC
    technicians.forEach((t) => {
      const row = fo.el("div", { class: "row", "data-technician-id": t.id });
      row.appendChild(fo.el("span", {}, t.name));
      const bar = fo.el("div", { class: "bar" });
      jobs.filter((j) => j.technician_id === t.id && (j.eta || j.planned_arrival)).forEach((j) => {
        const start = new Date(j.eta || j.planned_arrival);
        const base = new Date(start); base.setUTCHours(6, 0, 0, 0);
        const left = Math.max(0, (start - base) / span * 100);
        const width = Math.max(1, j.estimated_duration_s * 1000 / span * 100);
        const seg = fo.el("div", { class: "seg", "data-job-id": j.id, title: "Job " + j.id + " " + j.site, style: "left:" + left + "%;width:" + width + "%" }, String(j.id));
        if (OPEN.includes(j.status)) draggable(seg, j.id);
        bar.appendChild(seg);
      });
      dropTarget(bar, t.id);
      row.appendChild(bar);
      box.appendChild(row);
    });
  }

  function renderLists() {
    const reasons = new Map(((plan && plan.unassigned) || []).map((u) => [u.job_id, u.reason]));
    const un = document.getElementById("unassigned");
    un.replaceChildren();
    jobs.filter((j) => j.status === "new").forEach((j) => {
      const why = reasons.get(j.id) || j.explanation || "not yet planned";
      const li = fo.el("li", { "data-job-id": j.id }, "Job " + j.id + " · P" + j.priority + " · " + j.site + " — " + why);
      draggable(li, j.id);
      un.appendChild(li);
    });
    const risk = document.getElementById("at-risk");
    risk.replaceChildren();
    const late = (j) => j.response_due && !j.arrived_at && (j.eta || j.planned_arrival) &&
      new Date(j.eta || j.planned_arrival) > new Date(j.response_due);
    jobs.filter((j) => OPEN.includes(j.status) && (j.at_risk || late(j)))
      .forEach((j) => risk.appendChild(fo.el("li", {}, "Job " + j.id + " · " + j.site + " · due " + fo.fmtTime(j.response_due))));
    const jobSel = document.getElementById("assign-job");
    const techSel = document.getElementById("assign-tech");
    const keepJob = jobSel.value, keepTech = techSel.value;
    jobSel.replaceChildren(); techSel.replaceChildren();
    jobs.filter((j) => OPEN.includes(j.status)).forEach((j) =>
      jobSel.appendChild(fo.el("option", { value: j.id }, "Job " + j.id + " · " + j.site + (j.technician ? " · " + j.technician : ""))));
    technicians.forEach((t) => techSel.appendChild(fo.el("option", { value: t.id }, t.name)));
    if (keepJob) jobSel.value = keepJob;
    if (keepTech) techSel.value = keepTech;
  }

  async function loadKpis() {
    const res = await fo.api("GET", "/api/kpis");
    const box = document.getElementById("kpis");
    box.replaceChildren();
    if (!res.ok || !res.data || !res.data.rows.length) return;
    Object.entries(res.data.rows[0]).forEach(([name, value]) => {
      if (name === "key" || value === null) return;
      const tile = fo.el("div", { class: "kpi" });
      tile.appendChild(fo.el("div", { class: "label" }, name.replaceAll("_", " ")));
      tile.appendChild(fo.el("div", { class: "value" }, typeof value === "number" ? (Math.round(value * 100) / 100).toString() : String(value)));
      box.appendChild(tile);
    });
  }

  async function loadKpiChart() {
    const res = await fo.api("GET", "/api/kpis?by=day&days=14");
    const canvas = document.getElementById("kpi-chart");
    const name = document.getElementById("kpi-metric").value;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "12px sans-serif"; ctx.fillStyle = "#333";
    const rows = res.ok ? res.data.rows.filter((r) => r.key !== null && r[name] !== null) : [];
    if (!rows.length) { ctx.fillText("No data for this period", 10, 70); return; }
    const hi = Math.max(...rows.map((r) => r[name]), 1e-9);
    const w = (canvas.width - 20) / rows.length;
    rows.forEach((r, i) => {
      const h = (r[name] / hi) * (canvas.height - 40);
      ctx.fillStyle = "#0b5cad";
      ctx.fillRect(10 + i * w + 2, canvas.height - 20 - h, w - 4, h);
      ctx.fillStyle = "#333";
      ctx.fillText(String(r.key).substring(5, 10), 10 + i * w + 2, canvas.height - 5);
      ctx.fillText(Math.round(r[name] * 100) / 100, 10 + i * w + 2, canvas.height - 24 - h);
    });
  }
  document.getElementById("kpi-metric").addEventListener("change", loadKpiChart);

  async function loadDevices() {
    const [res, risk] = await Promise.all([fo.api("GET", "/api/devices"), fo.api("GET", "/api/predictions")]);
    const riskOf = new Map(risk.ok ? risk.data.map((p) => [p.device_id, p]) : []);
    const ul = document.getElementById("devices");
    ul.replaceChildren();
    if (!res.ok) return;
    res.data.forEach((d) => {
      const li = fo.el("li");
      const a = fo.el("a", { href: "/console/devices/" + d.id }, d.serial);
      const p = riskOf.get(d.id);
      const riskText = p ? " · failure risk " + (100 * p.p_fail).toFixed(0) + "%" : "";
      li.appendChild(a); li.appendChild(document.createTextNode(" · " + d.status + " · " + d.site + riskText));
      ul.appendChild(li);
    });
  }

  async function load() {
    const [t, j, p] = await Promise.all([fo.api("GET", "/api/technicians"), fo.api("GET", "/api/jobs"), fo.api("GET", "/api/plan")]);
    if (t.ok) technicians = t.data;
    if (j.ok) jobs = j.data;
    plan = p.ok ? p.data : null;
    renderMap(); renderTimelines(); renderLists();
  }

  const message = document.getElementById("assign-message");
  const refuse = (text) => { message.className = "message bad"; message.textContent = text; };

  async function sendOverride(body) {
    const res = await fo.api("POST", "/api/overrides", body, { "Idempotency-Key": fo.newKey() });
    if (!res.ok) {
      refuse(res.data && res.data.error ? res.data.error + (res.data.field ? " (" + res.data.field + ")" : "") : "Failed (" + res.status + ")");
    } else {
      const where = body.action === "move" ? " to position " + (body.position + 1) : "";
      message.className = "message good";
      message.textContent = "Applied: " + body.action + " job " + body.job_id + where + (res.data.warning ? " · warning: " + res.data.warning : "");
    }
    load();
  }

  document.getElementById("assign-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { job_id: parseInt(document.getElementById("assign-job").value, 10),
                   technician_id: parseInt(document.getElementById("assign-tech").value, 10),
                   action: document.getElementById("assign-action").value,
                   force: document.getElementById("assign-force").checked };
    if (Number.isNaN(body.job_id)) return refuse("Choose a job (job_id)");
    if (body.action === "move") {
      const raw = document.getElementById("assign-position").value.trim();
      const position = Number(raw);
      if (raw === "" || !Number.isInteger(position) || position < 1) {
        return refuse("Position must be a whole number from 1 (the first stop) (position)");
      }
      body.position = position - 1;
    }
    sendOverride(body);
  });

  const positionBox = document.getElementById("assign-position").closest("label");
  const showPosition = () => { positionBox.hidden = document.getElementById("assign-action").value !== "move"; };
  document.getElementById("assign-action").addEventListener("change", showPosition);
  showPosition();

  document.getElementById("replan-preview").addEventListener("click", async () => {
    const box = document.getElementById("replan-result");
    const res = await fo.api("POST", "/api/plan/preview", {});
    box.replaceChildren();
    if (!res.ok) { box.appendChild(fo.el("p", { class: "message bad" }, (res.data && res.data.error) || "Preview failed")); return; }
    const changes = res.data.changes || [];
    if (!changes.length) box.appendChild(fo.el("p", {}, "No changes."));
    const ul = fo.el("ul");
    changes.forEach((c) => ul.appendChild(fo.el("li", {}, c.description || JSON.stringify(c))));
    box.appendChild(ul);
    if (changes.length) {
      const apply = fo.el("button", { type: "button", class: "big" }, "Apply re-plan");
      apply.addEventListener("click", async () => {
        const r = await fo.api("POST", "/api/plan/apply", { preview_id: res.data.preview_id }, { "Idempotency-Key": fo.newKey() });
        box.replaceChildren(fo.el("p", { class: "message " + (r.ok ? "good" : "bad") }, r.ok ? "Re-plan applied" : ((r.data && r.data.error) || "Failed")));
        load();
      });
      box.appendChild(apply);
    }
  });

  let pending = null;
  function reloadSoon() { if (!pending) pending = setTimeout(() => { pending = null; load(); loadKpis(); }, 300); }

  load(); loadKpis(); loadKpiChart(); loadDevices();
  fo.live("/events", (ev) => {
    if (ev.kind === "technician.position") {
      const m = techMarkers.get(ev.payload.technician_id);
      if (m) m.setLatLng([ev.payload.lat, ev.payload.lon]);
      return;
    }
    reloadSoon();
  });
})();
