// Charts, drawn with uPlot from GET /api/v1/metrics/series/. Templates carry only data attributes
// (templates/metrics/_chart.html); every name in the answer (variants, models, servers) is placed
// with textContent or drawn on the canvas, never parsed as HTML. No inline script or style: the
// CSP allows neither, and uPlot sizes its elements through the CSSOM, which the CSP permits.
//
// After each draw a chart's <figure> says what it shows: data-state (ok, no_data, not_configured,
// unavailable, error), data-points (values drawn) and data-range; the <details> table holds the
// same numbers for screen readers and for copying.
(function () {
  "use strict";
  if (window.SwitchyardCharts) return; // the include may appear twice on a page
  window.SwitchyardCharts = true;

  // Blue and green first: a deployment's two variants read as their names.
  const COLORS = ["#2358c4", "#12805c", "#b7791f", "#9333ea", "#c53030", "#0e7490", "#be185d", "#4d7c0f"];
  const ROLLOUT_LINE = /^(blue|green)(\s|$)/;

  // During a rollout the gateway names the variants blue and green: they keep their own colours
  // whatever else the chart holds (lines come sorted by label, so "a" would take blue's).
  function lineColor(lines, i) {
    const rollout = lines.some(function (l) { return ROLLOUT_LINE.test(l.label); });
    if (!rollout) return COLORS[i % COLORS.length];
    const match = ROLLOUT_LINE.exec(lines[i].label);
    if (match) return match[1] === "blue" ? COLORS[0] : COLORS[1];
    const others = lines.slice(0, i).filter(function (l) { return !ROLLOUT_LINE.test(l.label); }).length;
    return COLORS[2 + others % (COLORS.length - 2)];
  }
  // Short ranges poll; long ones change too slowly to be worth it.
  const POLL_MS = { "15m": 5000, "1h": 10000, "24h": 60000 };
  const TABLE_ROWS = 500; // newest first; the chart keeps every point
  const MESSAGES = {
    not_configured: "Metrics are not configured",
    unavailable: "Prometheus is not answering",
    no_data: "No data in this range",
  };

  function format(unit, value) {
    if (value === null || value === undefined) return "—";
    if (unit === "ratio") return (value * 100).toFixed(value < 0.1 ? 2 : 1) + " %";
    if (unit === "s") return value < 1 ? (value * 1000).toFixed(value < 0.01 ? 2 : 1) + " ms" : value.toFixed(2) + " s";
    if (unit === "bytes") {
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
      return value.toFixed(i ? 1 : 0) + " " + units[i];
    }
    const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
    return value.toFixed(digits) + (unit ? " " + unit : "");
  }

  // The axis keeps its ticks short: the caption names a rate's unit; %, ms and bytes say their own.
  function formatTick(unit, value) {
    return unit === "req/s" || unit === "inferences/s" ? format("", value) : format(unit, value);
  }

  const CAPTIONS = { "req/s": "req/s", "inferences/s": "inferences/s", ratio: "%", s: "seconds", bytes: "bytes" };

  function timeText(t) {
    return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  // Markers: a dashed vertical line and its text, drawn on the canvas after the series.
  function markersPlugin(getMarkers) {
    return {
      hooks: {
        draw: function (u) {
          const markers = getMarkers() || [];
          if (!markers.length) return;
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#6b7280";
          ctx.fillStyle = "#1d2430";
          ctx.setLineDash([4, 4]);
          ctx.font = Math.round(11 * devicePixelRatio) + "px sans-serif";
          markers.forEach(function (m) {
            const x = Math.round(u.valToPos(m.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.fillText(String(m.text).slice(0, 60), x + 4, u.bbox.top + 12 * devicePixelRatio);
          });
          ctx.restore();
        },
      },
    };
  }

  function Chart(panel, figure) {
    this.panel = panel;
    this.figure = figure;
    this.series = figure.getAttribute("data-series");
    this.plotBox = figure.querySelector(".chart-plot");
    this.status = figure.querySelector(".chart-status");
    this.unitBox = figure.querySelector(".chart-unit");
    this.tableBox = figure.querySelector(".chart-table-body");
    this.plot = null;
    this.labels = "";
    this.answer = null;
    this.controller = null;
  }

  Chart.prototype.load = function (range) {
    const self = this;
    if (self.controller) self.controller.abort();
    const controller = new AbortController();
    self.controller = controller;
    const url = new URL(self.panel.api, window.location.href);
    url.searchParams.set("series", self.series);
    url.searchParams.set("scope", self.panel.scope);
    url.searchParams.set("range", range);
    return fetch(url.toString(), { credentials: "same-origin", headers: { Accept: "application/json" }, signal: controller.signal })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.detail || "HTTP " + response.status);
          return body;
        });
      })
      .then(function (body) {
        if (controller.signal.aborted || body.range !== self.panel.range) return;
        self.show(body);
      })
      .catch(function (err) {
        if (err.name === "AbortError") return;
        self.showMessage("error", "Could not load the chart: " + err.message);
      });
  };

  Chart.prototype.showMessage = function (state, text) {
    this.figure.setAttribute("data-state", state);
    this.figure.setAttribute("data-points", "0");
    this.status.textContent = text;
    this.status.hidden = false;
    this.plotBox.hidden = true;
    this.tableBox.replaceChildren(el("p", "Nothing to show.", "muted"));
  };

  Chart.prototype.show = function (body) {
    this.answer = body;
    this.figure.setAttribute("data-range", body.range);
    this.unitBox.textContent = CAPTIONS[body.unit] || "";
    if (body.status !== "ok") {
      // "Prometheus is not answering: <why>" carries its reason; the others say it all.
      const text = body.status === "unavailable" && body.message ? body.message : MESSAGES[body.status] || body.status;
      this.showMessage(body.status, text);
      return;
    }
    const lines = body.lines;
    const times = lines[0].points.map(function (p) { return p[0]; });
    const data = [times].concat(lines.map(function (line) { return line.points.map(function (p) { return p[1]; }); }));
    let drawn = 0;
    data.slice(1).forEach(function (ys) { ys.forEach(function (v) { if (v !== null) drawn++; }); });
    this.draw(body, data);
    this.table(body, times);
    this.status.hidden = !body.message;
    this.status.textContent = body.message || "";
    this.plotBox.hidden = false;
    this.figure.setAttribute("data-points", String(drawn));
    this.figure.setAttribute("data-state", "ok");
  };

  Chart.prototype.draw = function (body, data) {
    const self = this;
    const labels = body.lines.map(function (l) { return l.label; }).join("\u0000") + "|" + body.unit;
    const width = Math.max(280, Math.floor(self.plotBox.parentElement.clientWidth || 400) - 2);
    if (self.plot && self.labels === labels) {
      self.plot.setData(data);
      return;
    }
    if (self.plot) self.plot.destroy();
    self.labels = labels;
    const unit = body.unit;
    const opts = {
      width: width,
      height: 200,
      cursor: { drag: { x: false, y: false } },
      legend: { live: false },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.1 : 1]; } } },
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" } },
        { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, size: 70,
          values: function (u, ticks) { return ticks.map(function (v) { return formatTick(unit, v); }); } },
      ],
      series: [{ value: function (u, t) { return t === null ? "—" : timeText(t); } }].concat(body.lines.map(function (line, i) {
        return { label: line.label, stroke: lineColor(body.lines, i), width: 2, spanGaps: false,
                 value: function (u, v) { return format(unit, v); } };
      })),
      plugins: [markersPlugin(function () { return self.answer ? self.answer.markers : []; })],
    };
    self.plotBox.replaceChildren();
    self.plot = new window.uPlot(opts, data, self.plotBox);
  };

  Chart.prototype.resize = function () {
    if (!this.plot) return;
    const width = Math.max(280, Math.floor(this.plotBox.parentElement.clientWidth || 400) - 2);
    if (width !== this.plot.width) this.plot.setSize({ width: width, height: 200 });
  };

  Chart.prototype.table = function (body, times) {
    const unit = body.unit;
    const table = el("table", undefined, "compact");
    const caption = el("caption", "Values every " + body.step + " s" + (CAPTIONS[unit] ? " (" + CAPTIONS[unit] + ")" : "") + ", newest first");
    table.appendChild(caption);
    const head = el("tr");
    head.appendChild(el("th", "Time (UTC)"));
    body.lines.forEach(function (line) { head.appendChild(el("th", line.label)); });
    const thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    const tbody = el("tbody");
    let rows = 0;
    for (let i = times.length - 1; i >= 0 && rows < TABLE_ROWS; i--) {
      const values = body.lines.map(function (line) { return line.points[i][1]; });
      if (values.every(function (v) { return v === null; })) continue;
      const tr = el("tr");
      tr.appendChild(el("td", timeText(times[i])));
      values.forEach(function (v) { tr.appendChild(el("td", format(unit, v), "num")); });
      tbody.appendChild(tr);
      rows++;
    }
    table.appendChild(tbody);
    this.tableBox.replaceChildren(table);
  };

  function Panel(section) {
    const self = this;
    self.section = section;
    self.api = section.getAttribute("data-api");
    self.scope = section.getAttribute("data-scope");
    self.range = section.getAttribute("data-range") || "1h";
    self.timer = null;
    self.charts = Array.prototype.map.call(section.querySelectorAll("[data-chart]"), function (figure) {
      return new Chart(self, figure);
    });
    section.querySelectorAll("[data-chart-range]").forEach(function (button) {
      button.addEventListener("click", function () { self.setRange(button.getAttribute("data-chart-range")); });
    });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) self.refresh();
    });
    self.refresh();
  }

  Panel.prototype.setRange = function (range) {
    if (range === this.range) return;
    this.range = range;
    this.section.setAttribute("data-range", range);
    this.section.querySelectorAll("[data-chart-range]").forEach(function (button) {
      button.setAttribute("aria-pressed", button.getAttribute("data-chart-range") === range ? "true" : "false");
    });
    this.charts.forEach(function (chart) { chart.figure.setAttribute("data-state", "loading"); });
    this.refresh();
  };

  // Load every chart, then poll again while the page is visible and the range is short.
  Panel.prototype.refresh = function () {
    const self = this;
    if (self.timer) clearTimeout(self.timer);
    self.timer = null;
    const range = self.range;
    Promise.all(self.charts.map(function (chart) { return chart.load(range); })).then(function () {
      const every = POLL_MS[self.range];
      if (every && range === self.range && !document.hidden && !self.timer) {
        self.timer = setTimeout(function () { self.refresh(); }, every);
      }
    });
  };

  function start() {
    const panels = Array.prototype.map.call(document.querySelectorAll("[data-charts]"), function (section) {
      return new Panel(section);
    });
    let pending = null;
    window.addEventListener("resize", function () {
      if (pending) cancelAnimationFrame(pending);
      pending = requestAnimationFrame(function () {
        panels.forEach(function (p) { p.charts.forEach(function (c) { c.resize(); }); });
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
