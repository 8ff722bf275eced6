// Ledgerline AR dashboard: plain JavaScript and inline SVG, no build step, no external files.
// Every figure comes from the reporting API (same origin); amounts are shown exactly as the
// API returns them (decimal strings), never re-computed in floating point. Bar heights are
// the only place numbers are turned into floats, for drawing.
"use strict";

const COLORS = ["var(--b0)", "var(--b1)", "var(--b2)", "var(--b3)", "var(--b4)", "var(--b5)"];
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function headers() {
  const key = sessionStorage.getItem("ledgerline-api-key");
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, params) {
  const query = new URLSearchParams(params);
  const response = await fetch(`v1/reports/${path}?${query}`, { headers: headers() });
  const body = await response.json();
  if (!response.ok) throw new Error(`${path}: ${body.detail || response.status}`);
  return body;
}

function monthEnds(asOf, count) {
  const ends = [];
  const d = new Date(asOf + "T00:00:00Z");
  for (let i = count - 1; i >= 0; i--) {
    const end = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - i + 1, 0));
    ends.push(i === 0 ? asOf : end.toISOString().slice(0, 10));
  }
  return ends;
}

function monthStart(asOf) { return asOf.slice(0, 8) + "01"; }

function stackedBars(target, columns, labels, values, opts) {
  // columns: x labels; labels: stack names; values[column][label] = decimal string
  const width = 420, height = 200, pad = 34, gap = 8;
  const totals = columns.map((c) => labels.reduce((s, l) => s + Math.max(0, Number(values[c][l] || 0)), 0));
  const max = Math.max(1, ...totals);
  const barWidth = (width - pad - gap * columns.length) / columns.length;
  const svg = el("svg", { width, height: height + 20, viewBox: `0 0 ${width} ${height + 20}`, role: "img" });
  columns.forEach((column, i) => {
    let y = height;
    const x = pad + i * (barWidth + gap);
    labels.forEach((label, j) => {
      const amount = values[column][label] || "0";
      const h = (Math.max(0, Number(amount)) / max) * (height - 10);
      y -= h;
      const rect = el("rect", { x, y, width: barWidth, height: h, fill: COLORS[j % COLORS.length],
                                "data-testid": `${opts.id}-${column}-${label}`, "data-amount": amount });
      rect.appendChild(el("title", {}, `${column} ${label}: ${amount}`));
      svg.appendChild(rect);
    });
    svg.appendChild(el("text", { x: x + barWidth / 2, y: height + 14, "text-anchor": "middle" }, opts.short(column)));
  });
  svg.appendChild(el("text", { x: 0, y: 10 }, opts.maxLabel(max)));
  target.replaceChildren(svg);
}

function lines(target, points, series) {
  const width = 420, height = 180, pad = 30;
  const values = points.flatMap((p) => series.map((s) => Number(p[s.key] || 0)));
  const max = Math.max(1, ...values);
  const step = points.length > 1 ? (width - pad * 2) / (points.length - 1) : 0;
  const svg = el("svg", { width, height: height + 20, viewBox: `0 0 ${width} ${height + 20}`, role: "img" });
  series.forEach((s) => {
    const coords = points.map((p, i) => [pad + i * step, height - (Number(p[s.key] || 0) / max) * (height - 10)]);
    svg.appendChild(el("polyline", { points: coords.map((c) => c.join(",")).join(" "), fill: "none",
                                     stroke: s.color, "stroke-width": 2 }));
    coords.forEach(([x, y], i) => {
      const dot = el("circle", { cx: x, cy: y, r: 3, fill: s.color,
                                 "data-testid": `trend-${s.key}-${points[i].from.slice(0, 7)}`,
                                 "data-value": points[i][s.key] === null ? "" : points[i][s.key] });
      dot.appendChild(el("title", {}, `${points[i].from.slice(0, 7)} ${s.key}: ${points[i][s.key]}`));
      svg.appendChild(dot);
    });
  });
  points.forEach((p, i) => svg.appendChild(el("text", { x: pad + i * step, y: height + 14, "text-anchor": "middle" },
                                                 p.from.slice(5, 7))));
  svg.appendChild(el("text", { x: 0, y: 10 }, String(Math.round(max))));
  target.replaceChildren(svg);
}

async function currencies() {
  const select = $("currency");
  const body = await api("currencies", {});
  const wanted = new URLSearchParams(location.search).get("currency") || select.value;
  select.replaceChildren(...body.currencies.map((c) => new Option(c, c, false, c === wanted)));
}

async function render() {
  const status = $("status");
  status.className = "";
  status.textContent = "loading…";
  try {
    const asOf = $("as-of").value;
    const currency = $("currency").value;
    const base = { currency };
    const ends = monthEnds(asOf, 6);
    const [summary, month, trend, forecast, overdue, ...history] = await Promise.all([
      api("summary", { ...base, as_of: asOf }),
      api("kpis", { ...base, from: monthStart(asOf), to: asOf }),
      api("kpis/trend", { ...base, from: monthStart(ends[0]), to: asOf }),
      api("forecast", { ...base, as_of: asOf }),
      api("aging/top-overdue", { ...base, as_of: asOf, limit: 10 }),
      ...ends.map((d) => api("aging/summary", { ...base, as_of: d })),
    ]);
    document.querySelector("[data-testid=as-of]").textContent = `${asOf} (${currency})`;
    const set = (id, v) => { document.querySelector(`[data-testid=${id}]`).textContent = v === null ? "–" : v; };
    set("total-open", summary.total_open_balance);
    set("past-due", summary.past_due);
    set("unapplied", summary.unapplied_cash);
    set("dso", month.dso);
    set("cei", month.cei);
    set("add", month.average_days_delinquent);

    const labels = history[0].bucket_labels;
    const byEnd = Object.fromEntries(history.map((a) => [a.as_of, a.buckets]));
    stackedBars($("aging-chart"), ends, labels, byEnd, { id: "aging", short: (d) => d.slice(5), maxLabel: (m) => m.toFixed(0) });
    $("aging-legend").replaceChildren(...labels.map((l, j) => {
      const span = document.createElement("span");
      span.innerHTML = `<i style="background:${COLORS[j % COLORS.length]}"></i>${l}`;
      return span;
    }));

    lines($("trend-chart"), trend.periods, [
      { key: "dso", color: "#2f6db5" }, { key: "average_days_delinquent", color: "#c8553d" }, { key: "cei", color: "#3b8f5c" }]);

    const weeks = forecast.weeks.map((w) => String(w.week));
    const sources = ["invoices", "promises", "plans"];
    stackedBars($("forecast-chart"), weeks, sources,
                Object.fromEntries(forecast.weeks.map((w) => [String(w.week), w])),
                { id: "forecast", short: (w) => "W" + w, maxLabel: (m) => m.toFixed(0) });
    set("forecast-total", forecast.total);
    set("forecast-beyond", forecast.beyond);

    const body = document.querySelector("[data-testid=top-overdue] tbody");
    body.replaceChildren(...overdue.customers.map((c) => {
      const tr = document.createElement("tr");
      tr.setAttribute("data-testid", `overdue-${c.customer_id}`);
      for (const text of [c.customer_name || c.customer_id, c.past_due, c.over_90, c.total]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    }));
    status.textContent = "up to date";
  } catch (error) {
    status.className = "error";
    status.textContent = String(error.message || error);
  }
}

async function start() {
  const params = new URLSearchParams(location.search);
  $("as-of").value = params.get("as_of") || new Date().toISOString().slice(0, 10);
  $("api-key").value = sessionStorage.getItem("ledgerline-api-key") || "";
  $("api-key").addEventListener("change", (e) => {
    if (e.target.value) sessionStorage.setItem("ledgerline-api-key", e.target.value);
    else sessionStorage.removeItem("ledgerline-api-key");
  });
  $("refresh").addEventListener("click", render);
  $("as-of").addEventListener("change", render);
  $("currency").addEventListener("change", render);
  try {
    await currencies();
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = String(error.message || error);
    return;
  }
  await render();
}

start();
