/* The SLA page's charts (uptime per side, average spread, ±2 % depth per venue and pair, from
   series.json) and its live status (status.json every 15 s). Payloads are built by bots/wire.py. */
(function () {
  "use strict";
  const LWC = window.LightweightCharts;
  const root = document.getElementById("sla-charts");
  if (!root) return;
  const hoursSelect = document.getElementById("sla-hours");
  let charts = [];

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (k === "text") node.textContent = v; else node.setAttribute(k, v); });
    (children || []).forEach((c) => node.appendChild(c));
    return node;
  }

  function clock(time) { return new Date(time * 1000).toISOString().substring(11, 16); }

  function chart(container) {
    return LWC.createChart(container, { autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#44505f", fontSize: 11 },
      grid: { vertLines: { color: "#f0f2f5" }, horzLines: { color: "#f0f2f5" } },
      timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#e1e5eb",
                   tickMarkFormatter: (time) => clock(time) },
      rightPriceScale: { borderColor: "#e1e5eb" } });
  }

  function line(c, color, points, field, scale) {
    const series = c.addSeries(LWC.LineSeries, { color, lineWidth: 2, priceLineVisible: false });
    series.setData(points.filter((p) => p[field] !== null).map((p) => ({ time: p.t, value: p[field] * (scale || 1) })));
    return series;
  }

  function draw(payload) {
    charts.forEach((c) => c.remove());
    charts = [];
    root.replaceChildren();
    if (!LWC) { root.appendChild(el("div", { class: "state-note problem", text: "The chart library did not load." })); return; }
    if (!payload.series.length) { root.appendChild(el("div", { class: "state-note", text: "No stored minutes in this period yet." })); return; }
    payload.series.forEach((s) => {
      const boxes = ["uptime (%): bid green, ask red", "average spread (bps)", "depth within ±2 % (quote): bid green, ask red"].map((title) => {
        const box = el("div", { class: "chart chart-small" });
        root.appendChild(el("h3", { text: `${s.venue} ${s.pair} · ${title}` }));
        root.appendChild(box);
        return box;
      });
      const [up, spread, depth] = boxes.map(chart);
      line(up, "#1a7f37", s.points, "uptime_bid", 100);
      line(up, "#cf222e", s.points, "uptime_ask", 100);
      line(spread, "#8250df", s.points, "avg_spread_bps");
      line(depth, "#1a7f37", s.points, "depth_bid_2pct_quote");
      line(depth, "#cf222e", s.points, "depth_ask_2pct_quote");
      [up, spread, depth].forEach((c) => { c.timeScale().fitContent(); charts.push(c); });
    });
  }

  function load() {
    fetch(`${root.dataset.seriesUrl}?hours=${hoursSelect.value}`, { credentials: "same-origin" })
      .then((r) => r.json()).then(draw)
      .catch(() => root.replaceChildren(el("div", { class: "state-note problem", text: "Charts could not be loaded." })));
  }

  function refreshStatus() {
    fetch(root.dataset.statusUrl, { credentials: "same-origin" }).then((r) => r.json()).then((data) => {
      data.statuses.forEach((s) => {
        const panel = document.querySelector(`.sla-status[data-sla="${s.sla_id}"][data-pair="${s.figures.pair}"]`);
        if (!panel) return;
        const badge = panel.querySelector("[data-role=sla-status]");
        badge.className = `status sla-${s.status}`;
        badge.textContent = s.status;
        s.checks.forEach((c) => {
          const row = panel.querySelector(`tr[data-check="${c.name}"]`);
          if (!row) return;
          const cells = row.querySelectorAll("td");
          cells[1].replaceChildren(el("span", { class: `status sla-${c.status}`, text: c.status }));
          cells[2].textContent = c.figure_text;
          cells[4].textContent = c.needs;
        });
      });
      const overall = document.getElementById("sla-overall");
      if (overall && data.status) { overall.className = `status sla-${data.status}`; overall.textContent = data.status; }
    }).catch(() => {});
  }

  hoursSelect.addEventListener("change", load);
  load();
  setInterval(refreshStatus, 15000);
})();
