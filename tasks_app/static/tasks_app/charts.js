/* taskqueue dashboard: a small time-series chart drawn as SVG (no dependencies).
 *
 *   const chart = new TQChart(element, {mode: "area" | "bars", windowSeconds: 120, minSeconds: 30,
 *                                       series: [{key, label, className}], label: "..."});
 *   chart.update(points);   // [{t: ms at the start of a second, values: {key: n}}], oldest first
 *
 * Series are stacked (areas or bars); colours come from CSS classes. The time axis spans
 * the data, at least minSeconds and at most windowSeconds, ending now. Hovering or
 * touching the plot shows the values of that second.
 */
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = {top: 10, right: 10, bottom: 24, left: 44};

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  /** A "nice" upper bound and tick step for values up to max (1, 2 or 5 times a power of ten). */
  function niceScale(max, ticks) {
    const top = Math.max(max, 4);
    const rough = top / ticks;
    const power = Math.pow(10, Math.floor(Math.log10(rough)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough);
    return {max: Math.ceil(top / step) * step, step};
  }

  function formatNumber(value) {
    if (value >= 10000) return (value / 1000).toFixed(0) + "k";
    if (value >= 1000) return (value / 1000).toFixed(1).replace(/\.0$/, "") + "k";
    if (value > 0 && value < 10 && !Number.isInteger(value)) return value.toFixed(1);
    return String(Math.round(value));
  }

  function ago(seconds) {
    if (seconds === 0) return "now";
    if (seconds % 60 === 0) return "\u2212" + seconds / 60 + "m";
    if (seconds > 60) return "\u2212" + Math.floor(seconds / 60) + "m" + (seconds % 60) + "s";
    return "\u2212" + seconds + "s";
  }

  class TQChart {
    constructor(element, options) {
      this.element = element;
      this.mode = options.mode || "area";
      this.series = options.series;
      this.windowSeconds = options.windowSeconds || 120;
      this.minSeconds = options.minSeconds || 30;
      this.points = [];
      this.root = svg("svg", {class: "tq-chart", role: "img", "aria-label": options.label || ""},
                      element);
      this.tooltip = document.createElement("div");
      this.tooltip.className = "tq-tooltip";
      this.tooltip.hidden = true;
      element.appendChild(this.tooltip);
      this.hover = null;
      this.root.addEventListener("pointermove", (e) => this.pointAt(e));
      this.root.addEventListener("pointerdown", (e) => this.pointAt(e));
      this.root.addEventListener("pointerleave", () => { this.hover = null; this.render(); });
      if (window.ResizeObserver) new ResizeObserver(() => this.render()).observe(element);
    }

    update(points) {
      this.points = points;
      this.render();
    }

    total(point) {
      return this.series.reduce((sum, s) => sum + (point.values[s.key] || 0), 0);
    }

    geometry() {
      const width = Math.max(this.element.clientWidth, 120);
      const height = Math.max(this.element.clientHeight, 80);
      const plotW = width - MARGIN.left - MARGIN.right;
      const plotH = height - MARGIN.top - MARGIN.bottom;
      const last = this.points.length ? this.points[this.points.length - 1].t : Date.now();
      const end = last + 1000;  // the end of the newest second
      const first = this.points.length ? this.points[0].t : end;
      const span = Math.min(this.windowSeconds, Math.max(this.minSeconds, (end - first) / 1000));
      const start = end - span * 1000;
      const peak = this.points.reduce((m, p) => Math.max(m, this.total(p)), 0);
      const scale = niceScale(peak, plotH < 140 ? 3 : 4);
      const x = (t) => MARGIN.left + ((t - start) / (end - start)) * plotW;
      const y = (v) => MARGIN.top + plotH - (v / scale.max) * plotH;
      return {width, height, plotW, plotH, start, end, span, peak, scale, x, y};
    }

    render() {
      const g = this.geometry();
      this.element.dataset.peak = String(g.peak);
      this.element.dataset.sum = String(this.points.reduce((s, p) => s + this.total(p), 0));
      const root = this.root;
      root.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
      root.setAttribute("width", g.width);
      root.setAttribute("height", g.height);
      root.replaceChildren();
      this.drawGrid(g);
      if (this.mode === "bars") this.drawBars(g); else this.drawAreas(g);
      this.drawHover(g);
    }

    drawGrid(g) {
      const grid = svg("g", {class: "grid"}, this.root);
      for (let v = 0; v <= g.scale.max + 1e-9; v += g.scale.step) {
        const y = Math.round(g.y(v)) + 0.5;
        svg("line", {x1: MARGIN.left, x2: MARGIN.left + g.plotW, y1: y, y2: y,
                     class: v === 0 ? "axis" : ""}, grid);
        const label = svg("text", {x: MARGIN.left - 8, y: y + 4, "text-anchor": "end"}, grid);
        label.textContent = formatNumber(v);
      }
      const most = g.plotW < 360 ? 3 : 5;
      const every = [5, 10, 15, 30, 60, 120, 300].find((step) => g.span / step <= most) || 600;
      for (let s = 0; s <= g.span; s += every) {
        const anchor = s === 0 ? "end" : (s + every > g.span && g.x(g.end - s * 1000) < MARGIN.left + 24 ? "start" : "middle");
        const label = svg("text", {x: g.x(g.end - s * 1000), y: g.height - 6, "text-anchor": anchor}, grid);
        label.textContent = ago(s);
      }
    }

    /** Stacked bands, the first series on the baseline; a band's top edge is drawn only
     *  where it is thicker than nothing, so an empty band never hides another's edge. */
    drawAreas(g) {
      const layer = svg("g", {class: "areas"}, this.root);
      if (!this.points.length) return;
      const at = (p) => g.x(p.t + 1000).toFixed(1);
      const base = this.points.map(() => 0);
      for (const s of this.series) {
        const top = this.points.map((p, i) => base[i] + (p.values[s.key] || 0));
        const upper = this.points.map((p, i) => `${at(p)},${g.y(top[i]).toFixed(1)}`);
        const lower = this.points.map((p, i) => `${at(p)},${g.y(base[i]).toFixed(1)}`).reverse();
        svg("path", {d: `M${upper.join("L")}L${lower.join("L")}Z`, class: `fill ${s.className}`,
                     "data-series": s.key}, layer);
        top.forEach((v, i) => { base[i] = v; });
      }
      const total = this.points.map((p, i) => `${at(p)},${g.y(base[i]).toFixed(1)}`);
      svg("path", {d: `M${total.join("L")}`, class: "line total"}, layer);
    }

    drawBars(g) {
      const layer = svg("g", {class: "bars"}, this.root);
      const slot = g.plotW / g.span;
      const width = Math.max(1, slot - (slot > 4 ? 1.5 : 0.5));
      for (const p of this.points) {
        let base = 0;
        for (const s of this.series) {
          const v = p.values[s.key] || 0;
          if (v <= 0) continue;
          const y0 = g.y(base), y1 = g.y(base + v);
          svg("rect", {x: (g.x(p.t) + (slot - width) / 2).toFixed(1), y: y1.toFixed(1), width: width.toFixed(1),
                       height: Math.max(1, y0 - y1).toFixed(1), rx: width > 3 ? 1 : 0,
                       class: `bar ${s.className}`, "data-series": s.key}, layer);
          base += v;
        }
      }
    }

    pointAt(event) {
      const box = this.root.getBoundingClientRect();
      this.hover = event.clientX - box.left;
      this.render();
    }

    drawHover(g) {
      if (this.hover === null || !this.points.length) { this.tooltip.hidden = true; return; }
      const t = g.start + ((this.hover - MARGIN.left) / g.plotW) * (g.end - g.start);
      let nearest = this.points[0];
      const mid = (p) => p.t + (this.mode === "bars" ? 500 : 1000);
      for (const p of this.points) if (Math.abs(mid(p) - t) < Math.abs(mid(nearest) - t)) nearest = p;
      const x = g.x(mid(nearest));
      svg("line", {x1: x, x2: x, y1: MARGIN.top, y2: MARGIN.top + g.plotH, class: "cursor"}, this.root);
      const seconds = Math.round((g.end - 1000 - nearest.t) / 1000);
      const rows = this.series.map((s) =>
        `<div><i class="swatch ${s.className}"></i>${s.label}<b>${formatNumber(nearest.values[s.key] || 0)}</b></div>`);
      this.tooltip.innerHTML = `<div class="when">${ago(seconds)}</div>${rows.join("")}`;
      this.tooltip.hidden = false;
      const left = Math.min(Math.max(x + 12, 0), g.width - this.tooltip.offsetWidth - 4);
      this.tooltip.style.left = `${x + 12 + this.tooltip.offsetWidth > g.width ? x - this.tooltip.offsetWidth - 12 : left}px`;
      this.tooltip.style.top = `${MARGIN.top}px`;
    }
  }

  window.TQChart = TQChart;
  window.TQChart.formatNumber = formatNumber;
})();
