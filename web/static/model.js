// Model page: the registry with each version's evaluation metrics.
"use strict";
(async () => {
  const res = await fo.api("GET", "/api/models");
  const ul = document.getElementById("models");
  if (!res.ok) return;
  res.data.forEach((m) => {
    const metrics = Object.entries(m.metrics || {}).filter(([, v]) => typeof v === "number")
      .map(([k, v]) => k + " " + (Math.round(v * 1000) / 1000)).join(", ");
    ul.appendChild(fo.el("li", {}, "v" + m.version + (m.active ? " (active)" : "") + " · " + m.estimator + " · " + metrics));
  });
})();
