// The operator page: reads the staff routes next to it (Airflow's session cookie authenticates them) and
// writes nothing into the page as HTML, only as text, so nothing a record or a form holds can run here.
"use strict";

const API = new URL("..", document.baseURI);  // the page is served at <prefix>/ui/, the routes at <prefix>/
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b6fb6", "#e07b39", "#4f9d69", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c",
                 "#ccb974", "#64b5cd"];

async function call(path, options = {}) {
  const response = await fetch(new URL(path, API), {credentials: "same-origin", ...options});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? response.statusText);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function post(path, body) {
  return call(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
}

function el(name, attributes = {}, ...children) {
  const node = name.startsWith("svg:") ? document.createElementNS(SVG, name.slice(4)) : document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children.map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return node;
}

function fillTable(section, rows, columns, emptyText) {
  const body = document.querySelector(`#${section} tbody`);
  body.replaceChildren(...(rows.length ? rows.map((row) => el("tr", {"data-id": row.id ?? row.run_id ?? ""},
    ...columns.map((cell) => { const v = cell(row); return v instanceof Node ? el("td", {}, v) : el("td", {}, v ?? "—"); })))
    : [el("tr", {}, el("td", {class: "empty", colspan: columns.length}, emptyText))]));
}

const day = (iso) => (iso ? iso.slice(0, 10) : "—");

// --- forecast ---------------------------------------------------------------------------------------

async function loadForecast() {
  const days = Number(document.getElementById("forecast-days").value);
  const forecast = await call(`forecast?days=${days}`);
  drawChart(forecast);
  fillTerminations(forecast);
}

// Terminated accounts no offboarding has been started for: overdue ones first, then those falling due
// within the forecast's days (the forecast answers both).
function fillTerminations({overdue_terminations: overdue = [], terminations_due: due = []}) {
  const rows = [...overdue, ...due].map((t) => ({...t, id: t.account_id}));
  fillTable("terminations", rows, [
    (t) => t.account_id, (t) => t.choice, (t) => day(t.terminated_at), (t) => day(t.due_at),
    (t) => (t.overdue ? el("strong", {class: "overdue"}, "overdue: start its offboarding") : "due"),
  ], "No termination is waiting for its offboarding");
}

function drawChart({start, days, by_day: byDay}) {
  const svg = document.getElementById("forecast-chart");
  const classes = [...new Set(Object.values(byDay).flatMap(Object.keys))].sort();
  const dates = Array.from({length: days + 1}, (_, i) => addDays(start, i));
  const totals = dates.map((d) => Object.values(byDay[d] ?? {}).reduce((a, b) => a + b, 0));
  const total = totals.reduce((a, b) => a + b, 0);
  document.getElementById("forecast-total").textContent =
    `${total.toLocaleString("en")} records fall due over ${days} days`;
  svg.setAttribute("data-total", String(total));
  const width = svg.clientWidth || 900, height = 260, left = 56, bottom = 28, top = 8;
  const plot = {w: width - left - 8, h: height - top - bottom};
  const max = Math.max(1, ...totals), bar = plot.w / dates.length;
  const y = (v) => top + plot.h - (v / max) * plot.h;
  const parts = [el("svg:line", {x1: left, x2: left + plot.w, y1: y(0), y2: y(0), stroke: "#9aa5b1"})];
  for (const tick of [0, max / 2, max]) {
    parts.push(el("svg:text", {x: left - 6, y: y(tick) + 4, "text-anchor": "end", "font-size": 11, fill: "#52606d"},
                  Math.round(tick).toLocaleString("en")));
  }
  const every = Math.ceil(dates.length / 10);
  dates.forEach((date, i) => {
    let base = 0;
    for (const [c, name] of classes.entries()) {
      const records = byDay[date]?.[name] ?? 0;
      if (!records) continue;
      parts.push(el("svg:rect", {x: left + i * bar + 1, y: y(base + records), width: Math.max(1, bar - 2),
                                 height: y(base) - y(base + records), fill: PALETTE[c % PALETTE.length],
                                 class: "bar", "data-day": date, "data-class": name, "data-records": records},
                    el("svg:title", {}, `${date} · ${name}: ${records.toLocaleString("en")} records`)));
      base += records;
    }
    if (i % every === 0) {
      parts.push(el("svg:text", {x: left + i * bar + bar / 2, y: height - 8, "text-anchor": "middle",
                                 "font-size": 11, fill: "#52606d"}, date.slice(5)));
    }
  });
  if (!total) {
    parts.push(el("svg:text", {x: left + plot.w / 2, y: top + plot.h / 2, "text-anchor": "middle", fill: "#7b8794"},
                  `Nothing falls due in the next ${days} days`));
  }
  svg.replaceChildren(...parts);
  document.getElementById("forecast-legend").replaceChildren(...classes.map((name, c) => el("li", {},
    el("svg:svg", {width: 12, height: 12}, el("svg:rect", {width: 12, height: 12, fill: PALETTE[c % PALETTE.length]})),
    name)));
}

function addDays(isoDate, n) {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

// --- offboardings, certificates, holds --------------------------------------------------------------

async function loadOffboardings() {
  const open = await call("offboardings");
  fillTable("offboardings", open, [
    (o) => o.account_id, (o) => o.choice, (o) => day(o.effective_at), (o) => el("strong", {}, o.stage),
    (o) => Object.entries(o.tasks).map(([s, n]) => `${n} ${s}`).join(", "), (o) => el("code", {}, o.run_id.slice(0, 12)),
  ], "No offboarding in progress");
}

async function loadCertificates() {
  const issued = await call("certificates");
  fillTable("certificates", issued.map((c) => ({...c, id: c.certificate_id})), [
    (c) => el("code", {}, c.certificate_id), (c) => c.account_id, (c) => day(c.issued_at),
    (c) => (c.revoked ? "revoked" : "valid"), (c) => (c.revoked ? "—" : linkButton(c)),
  ], "No certificate issued yet");
}

function linkButton(certificate) {
  const button = el("button", {type: "button", class: "make-link"}, "Create 7-day link");
  button.addEventListener("click", async () => {
    try {
      const made = await post(`certificates/${encodeURIComponent(certificate.certificate_id)}/links`, {hours: 168});
      const link = el("input", {class: "link", readonly: "", value: new URL(made.path, location.origin).href,
                                title: `expires ${made.expires_at}`});
      button.replaceWith(link);
      link.select();
    } catch (error) { report(error); }
  });
  return button;
}

async function loadHolds() {
  const holds = await call("holds");
  fillTable("holds", holds, [
    (h) => el("code", {}, h.id), (h) => h.account_id ?? "every account", (h) => h.data_class ?? "all data classes",
    (h) => h.reference, (h) => h.placed_by, (h) => day(h.placed_at), (h) => releaseButton(h),
  ], "No legal hold in force");
}

function releaseButton(hold) {
  const button = el("button", {type: "button", class: "release"}, "Release");
  button.addEventListener("click", async () => {
    const reason = window.prompt(`Release ${hold.id}? Deletion it stopped resumes on the next run.\nWhy?`);
    if (!reason) return;
    try {
      await post(`holds/${encodeURIComponent(hold.id)}/release`, {reason});
      await Promise.all([loadHolds(), loadForecast()]);
    } catch (error) { report(error); }
  });
  return button;
}

async function loadDataClasses() {
  const select = document.querySelector("#hold-form select[name=data_class]");
  for (const c of await call("data-classes")) select.append(el("option", {value: c.name, title: c.description}, c.name));
}

async function placeHold(event) {
  event.preventDefault();
  const form = event.target, output = document.getElementById("hold-result");
  const fields = Object.fromEntries(new FormData(form));
  const body = {reason: fields.reason, reference: fields.reference,
                account_id: fields.account_id.trim() || null, data_class: fields.data_class || null};
  try {
    const placed = await post("holds", body);
    output.className = "";
    output.textContent = `Placed ${placed.id}`;
    form.reset();
    await Promise.all([loadHolds(), loadForecast()]);
  } catch (error) {
    output.className = "error";
    output.textContent = error.message;
  }
}

// --- page -------------------------------------------------------------------------------------------

function report(error) {
  const status = document.getElementById("status");
  status.className = "error";
  status.textContent = error.message;
}

async function main() {
  document.getElementById("forecast-days").addEventListener("change", () => loadForecast().catch(report));
  document.getElementById("hold-form").addEventListener("submit", placeHold);
  try {
    await Promise.all([loadForecast(), loadOffboardings(), loadCertificates(), loadHolds(), loadDataClasses()]);
    const status = document.getElementById("status");
    status.textContent = `Updated ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`;
    document.body.dataset.ready = "true";
  } catch (error) { report(error); }
}

main();
