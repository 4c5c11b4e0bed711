// Device page: hourly telemetry chart from the rollup, risk and explanation, events, history.
"use strict";
(() => {
  const box = document.getElementById("device");
  const id = box.dataset.deviceId;
  const select = document.getElementById("metric");
  const canvas = document.getElementById("chart");

  function draw(rows, label) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 36;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#333"; ctx.font = "12px sans-serif";
    if (!rows.length) { ctx.fillText("No telemetry in this period", pad, h / 2); return; }
    const xs = rows.map((r) => new Date(r.bucket).getTime());
    const lo = Math.min(...rows.map((r) => r.min)), hi = Math.max(...rows.map((r) => r.max));
    const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
    const X = (t) => pad + (t - x0) / Math.max(1, x1 - x0) * (w - 2 * pad);
    const Y = (v) => h - pad - (v - lo) / Math.max(1e-9, hi - lo) * (h - 2 * pad);
    ctx.fillStyle = "#cfe0f3";
    rows.forEach((r) => { const x = X(new Date(r.bucket).getTime()); ctx.fillRect(x - 1, Y(r.max), 3, Math.max(1, Y(r.min) - Y(r.max))); });
    ctx.strokeStyle = "#0b5cad"; ctx.beginPath();
    rows.forEach((r, i) => { const x = X(new Date(r.bucket).getTime()), y = Y(r.mean); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke();
    ctx.fillStyle = "#333";
    ctx.fillText(label + " hourly mean (band: min–max)", pad, 14);
    ctx.fillText(hi.toFixed(1), 2, pad); ctx.fillText(lo.toFixed(1), 2, h - pad);
  }

  async function chart() {
    const opt = select.selectedOptions[0];
    const res = await fo.api("GET", "/api/devices/" + id + "/telemetry?hours=168&metric=" + select.value);
    draw(res.ok ? res.data : [], opt ? opt.textContent : "");
  }

  async function load() {
    const res = await fo.api("GET", "/api/devices/" + id);
    if (!res.ok) return;
    res.data.metrics.forEach((m) => select.appendChild(fo.el("option", { value: m.index }, m.name + " (" + m.unit + ")")));
    const events = document.getElementById("events");
    res.data.events.forEach((e) => events.appendChild(fo.el("li", {}, e.ts + " · " + e.severity + " · " + e.code)));
    chart();
    const hist = await fo.api("GET", "/api/devices/" + id + "/jobs");
    const ul = document.getElementById("history");
    if (hist.ok) hist.data.forEach((j) => ul.appendChild(fo.el("li", {}, (j.completed_at || j.created_at) + " · " + j.type + " · " + j.status + (j.notes ? " · " + j.notes : ""))));
    const risk = await fo.api("GET", "/api/devices/" + id + "/predictions");
    const riskBox = document.getElementById("risk");
    if (risk.ok && risk.data.length) {
      const ul2 = fo.el("ul");
      risk.data.forEach((p) => ul2.appendChild(fo.el("li", {}, p.scored_at + " · failure risk " + (100 * p.p_fail).toFixed(0) + "% · RUL " + Math.round(p.rul_h) + " h" + (p.failure_mode ? " · " + p.failure_mode : "") + (p.explanation ? " · " + p.explanation : ""))));
      riskBox.appendChild(ul2);
    } else {
      riskBox.textContent = "No predictions for this device yet.";
    }
  }
  select.addEventListener("change", chart);
  load();
})();
