// Customer tracking: status steps, ETA window, coarse position on the way, feedback after completion.
"use strict";
(() => {
  const box = document.getElementById("tracking");
  const token = box.dataset.token;
  const mapEl = document.getElementById("map");
  let mapBox = null;
  let marker = null;

  function showPosition(p) {
    if (!p) { mapEl.hidden = true; return; }
    mapEl.hidden = false;
    if (!mapBox) mapBox = fo.makeMap(mapEl, [p.lat, p.lon]);
    if (!mapBox) return;
    if (!marker) marker = L.circle([p.lat, p.lon], { radius: 800, color: "#0b5cad" }).addTo(mapBox.layer);
    marker.setLatLng([p.lat, p.lon]);
    mapBox.map.setView([p.lat, p.lon], 12);
  }

  function render(v) {
    let past = true;
    document.querySelectorAll("#steps li").forEach((li) => {
      const current = li.dataset.step === v.step;
      if (current) past = false;
      li.classList.toggle("current", current);
      li.classList.toggle("past", past && !current);
    });
    document.getElementById("who").textContent = v.technician ? "Your technician: " + v.technician : "";
    document.getElementById("eta").textContent = v.eta_window
      ? "Expected between " + fo.fmtTime(v.eta_window.start) + " and " + fo.fmtTime(v.eta_window.end) + " (UTC)" : "";
    showPosition(v.position);
    document.getElementById("feedback").hidden = !v.completed || v.feedback_given;
    document.getElementById("thanks").hidden = !v.feedback_given;
  }

  async function refresh() {
    const res = await fo.api("GET", "/track/" + token + "/status.json");
    if (res.ok) render(res.data);
  }

  document.getElementById("feedback").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { rating: parseInt(document.getElementById("rating").value, 10),
                   comment: document.getElementById("comment").value };
    const res = await fo.api("POST", "/track/" + token + "/feedback", body);
    const msg = document.getElementById("feedback-message");
    msg.textContent = res.ok ? "" : ((res.data && res.data.error) || "Could not send feedback");
    refresh();
  });

  refresh();
  fo.live("/track/" + token + "/events", (ev) => {
    if (ev.kind === "technician.position") showPosition(ev.payload); else refresh();
  });
})();
