// The forecast as a stacked bar chart: records falling due per sweep date and data class. Bars are
// aggregated by week or month when the plot has too few pixels per day to draw each day legibly, ticks are
// nice whole numbers, and every bar carries a <title>; the table beside it is the keyboard and touch view.
import {el} from "./dom.js";
import {calendarDate, count, number} from "./format.js";

const MIN_BAR_PX = 6;  // narrower than this a bar is a hairline: aggregate into longer buckets instead
const HEIGHT = 280;
const MARGIN = {top: 12, right: 12, bottom: 48};
const SERIES = 12;  // colours in operators.css (.series-0 .. .series-11), each >= 3:1 against both backgrounds

function addDays(isoDate, n) {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

const BUCKET_START = {
  day: (date) => date,
  week: (date) => addDays(date, -((new Date(`${date}T00:00:00Z`).getUTCDay() + 6) % 7)),  // its Monday
  month: (date) => `${date.slice(0, 7)}-01`,
};

/** The sweep dates the forecast covers: day 0 (due at the next sweep) to day `days`. */
export const sweepDates = ({start, days}) => Array.from({length: days + 1}, (_, i) => addDays(start, i));

/** "day" when each day gets >= 6 px, else "week" when each week does, else "month". */
export function bucketKind(dates, plotWidth) {
  for (const kind of ["day", "week"]) {
    if (plotWidth / new Set(dates.map(BUCKET_START[kind])).size >= MIN_BAR_PX) return kind;
  }
  return "month";
}

/** The forecast summed per bucket: [{start, dates, classes: {class: records}, accounts: {class: {id: n}}, total}]. */
export function buckets(forecast, kind) {
  const found = new Map();
  for (const date of sweepDates(forecast)) {
    const key = BUCKET_START[kind](date);
    if (!found.has(key)) found.set(key, {start: key, dates: [], classes: {}, accounts: {}, total: 0});
    found.get(key).dates.push(date);
  }
  for (const [date, classes] of Object.entries(forecast.by_day)) {
    const bucket = found.get(BUCKET_START[kind](date));
    if (!bucket) continue;
    for (const [name, records] of Object.entries(classes)) {
      bucket.classes[name] = (bucket.classes[name] ?? 0) + records;
      bucket.total += records;
    }
  }
  for (const line of forecast.lines ?? []) {
    const bucket = found.get(BUCKET_START[kind](line.day));
    if (!bucket) continue;
    const perAccount = (bucket.accounts[line.data_class] ??= {});
    perAccount[line.account_id] = (perAccount[line.account_id] ?? 0) + line.records;
  }
  return [...found.values()];
}

/** Tick steps of 1, 2 or 5 x 10^k, whole numbers only, about five ticks up to `max`. */
export function niceTicks(max, target = 5) {
  const raw = Math.max(1, max) / target;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw));
  const top = Math.max(step, Math.ceil(max / step) * step);
  return Array.from({length: Math.round(top / step) + 1}, (_, i) => i * step);
}

const TICK_CHAR_PX = 6.5;  // the width of a character of an 11px tick label, generously

/** Date labels under every n-th bucket, n chosen so labels never overlap; kept inside the chart's edges. */
function xTicks(drawn, kind, withYear, {left, slot, width, y}) {
  const text = (bucket) => calendarDate(bucket.start, {withYear, style: kind === "month" ? "month" : "day"});
  const half = (TICK_CHAR_PX * Math.max(...drawn.map((b) => text(b).length))) / 2;
  const every = Math.max(1, Math.ceil((2 * half + 12) / slot));
  const ticks = [];
  let lastRight = -Infinity;
  drawn.forEach((bucket, i) => {
    if (i % every) return;
    const x = Math.min(Math.max(left + i * slot + slot / 2, half), width - half);
    if (x - half < lastRight + 8) return;  // clamped against the edge onto its neighbour: leave it out
    lastRight = x + half;
    ticks.push(el("svg:text", {class: "tick", x, y, "text-anchor": "middle"}, text(bucket)));
  });
  return ticks;
}

const crossesYear = (dates) => dates[0].slice(0, 4) !== dates[dates.length - 1].slice(0, 4);

/** A bucket's name in words: "30 Nov", "Week of 30 Nov 2026", "Dec 2026". */
export function bucketLabel(bucket, kind, withYear) {
  if (kind === "month") return calendarDate(bucket.start, {withYear, style: "month"});
  const date = calendarDate(bucket.start, {withYear});
  return kind === "week" ? `Week of ${date}` : date;
}

function barTitle(bucket, kind, withYear, name, records, customers) {
  const top = Object.entries(bucket.accounts[name] ?? {}).sort((a, b) => b[1] - a[1]).slice(0, 3)
    .map(([id, n]) => `${id}${customers[id] ? ` (${customers[id]})` : ""}: ${number(n)}`);
  const accounts = top.length ? `; most from ${top.join(", ")}` : "";
  return `${bucketLabel(bucket, kind, withYear)} · ${name}: ${count(records, "record")}${accounts}`;
}

/** Draw `forecast` into `svg` at its current width; returns what was drawn for the legend and table. */
export function drawChart(svg, forecast) {
  const dates = sweepDates(forecast);
  const withYear = crossesYear(dates);
  const classes = [...new Set(Object.values(forecast.by_day).flatMap(Object.keys))].sort();
  const width = Math.max(240, Math.floor(svg.parentElement.clientWidth || 640));
  const probe = buckets(forecast, "day");
  const ticks = niceTicks(Math.max(0, ...probe.map((b) => b.total)));
  // Room for the axis title and the widest tick any bucketing could need (a month sums the most).
  const widest = niceTicks(Math.max(0, ...buckets(forecast, "month").map((b) => b.total))).at(-1);
  const left = 28 + 7 * number(widest).length;
  const plot = {w: width - left - MARGIN.right, h: HEIGHT - MARGIN.top - MARGIN.bottom};
  const kind = bucketKind(dates, plot.w);
  const drawn = kind === "day" ? probe : buckets(forecast, kind);
  const yTicks = kind === "day" ? ticks : niceTicks(Math.max(0, ...drawn.map((b) => b.total)));
  const max = yTicks[yTicks.length - 1];
  const y = (v) => MARGIN.top + plot.h - (v / max) * plot.h;
  const slot = plot.w / drawn.length, gap = Math.min(2, slot * 0.2);
  const total = drawn.reduce((sum, b) => sum + b.total, 0);

  const yAxis = el("svg:g", {class: "axis-y"},
    ...yTicks.flatMap((tick) => [
      el("svg:line", {class: "grid", x1: left, x2: left + plot.w, y1: y(tick), y2: y(tick)}),
      el("svg:text", {class: "tick", x: left - 6, y: y(tick) + 4, "text-anchor": "end"}, number(tick))]),
    el("svg:text", {class: "axis-title", transform: `translate(12 ${MARGIN.top + plot.h / 2}) rotate(-90)`,
                    "text-anchor": "middle"}, "Records falling due"));
  const xAxis = el("svg:g", {class: "axis-x"},
    el("svg:line", {class: "baseline", x1: left, x2: left + plot.w, y1: y(0), y2: y(0)}),
    ...xTicks(drawn, kind, withYear, {left, slot, width, y: MARGIN.top + plot.h + 16}),
    el("svg:text", {class: "axis-title", x: left + plot.w / 2, y: HEIGHT - 6, "text-anchor": "middle"},
       `Sweep date (UTC)${kind === "day" ? "" : `, per ${kind}`}`));

  const bars = drawn.flatMap((bucket, i) => {
    let base = 0;
    return classes.flatMap((name, c) => {
      const records = bucket.classes[name] ?? 0;
      if (!records) return [];
      const rect = el("svg:rect", {class: `bar series-${c % SERIES}`, x: left + i * slot + gap / 2, y: y(base + records),
                                   width: Math.max(1, slot - gap), height: y(base) - y(base + records),
                                   "data-day": bucket.start, "data-class": name, "data-records": records},
                      el("svg:title", {}, barTitle(bucket, kind, withYear, name, records, forecast.customers ?? {})));
      base += records;
      return [rect];
    });
  });
  const nothing = total ? [] : [el("svg:text", {class: "nothing", x: left + plot.w / 2, y: MARGIN.top + plot.h / 2,
                                                "text-anchor": "middle"}, `Nothing falls due in the next ${forecast.days} days`)];

  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(HEIGHT));
  svg.setAttribute("aria-label", `Records falling due per ${kind} over the next ${forecast.days} days, `
    + `${calendarDate(dates[0], {withYear: true})} to ${calendarDate(dates[dates.length - 1], {withYear: true})}: `
    + `${count(total, "record")} in total. The numbers are in the table below the chart.`);
  Object.assign(svg.dataset, {days: String(forecast.days), total: String(total), bucket: kind});
  svg.replaceChildren(yAxis, ...bars, xAxis, ...nothing);
  return {classes, kind, buckets: drawn, total, withYear};
}

/** The colour key: one item per data class, sorted, its swatch coloured as its bars. */
export function legendItems(classes) {
  return classes.map((name, c) => el("li", {},
    el("svg:svg", {width: 12, height: 12, "aria-hidden": "true"},
       el("svg:rect", {class: `series-${c % SERIES}`, width: 12, height: 12, rx: 2})), name));
}
