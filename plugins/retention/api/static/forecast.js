// The forecast section: the chart, its table, the legend and the terminations list, from GET forecast.
// A 366-day answer can take far longer than a 7-day one, so every request carries its range, a newer
// selection aborts the older request, and an answer is drawn only if its range is still the selected one.
// While an answer is awaited the old chart stays, greyed, and the section says what is loading.
import {get} from "./api.js";
import {bucketLabel, drawChart, legendItems} from "./chart.js";
import {accountCell, el, fillRows, sectionError} from "./dom.js";
import {calendarDate, count, dateTime, number} from "./format.js";

const select = () => document.getElementById("forecast-days");
let pending = null;  // the AbortController of the request in flight
let shown = null;    // the forecast answer drawn now (redrawn on resize and when the time zone is known)
// Per-account lines name the accounts behind a bar; at thousands of accounts they run to hundreds of thousands,
// too many to download at each refresh: above this the route sends only the per-day series.
const MAX_LINES = 20000;

function setLoading(days) {
  const section = document.getElementById("forecast");
  section.classList.toggle("loading", days !== null);
  section.setAttribute("aria-busy", String(days !== null));
  document.getElementById("forecast-loading").textContent =
    days === null ? "" : `Loading the ${days}-day forecast…`;
}

/** Ask for the selected range; draw the answer only if that range is still selected when it arrives. */
export async function loadForecast() {
  const days = Number(select().value);
  pending?.abort();
  const controller = pending = new AbortController();
  setLoading(days);
  try {
    const answer = await get(`forecast?days=${days}&max_lines=${MAX_LINES}`, controller.signal);
    if (answer.days !== Number(select().value) || controller !== pending) return;  // superseded meanwhile
    shown = answer;
    draw();
    sectionError("forecast", null);
  } catch (error) {
    if (error.name === "AbortError" || controller !== pending) return;
    sectionError("forecast", `The ${days}-day forecast could not be loaded: ${error.message}. `
      + "The chart below, if any, is from an earlier answer.");
    sectionError("terminations", `The terminations come with the forecast, which could not be loaded: ${error.message}.`);
  } finally {
    if (controller === pending) {
      pending = null;
      setLoading(null);
    }
  }
}

/** True while an answer is awaited (a refresh then leaves it running rather than asking again). */
export const forecastLoading = () => pending !== null;

/** Redraw the answer shown (the figure's width or the page's time zone changed). */
export function draw() {
  if (!shown) return;
  const drawn = drawChart(document.getElementById("forecast-chart"), shown);
  const omitted = shown.lines_omitted
    ? ` (per-account figures left out: ${number(shown.lines_total)} lines; the command retention forecast --json has them)` : "";
  document.getElementById("forecast-total").textContent =
    `${number(drawn.total)} records fall due over ${shown.days} days${omitted}`;
  document.getElementById("forecast-legend").replaceChildren(...legendItems(drawn.classes));
  fillTable(drawn);
  fillTerminations(shown);
}

function fillTable({classes, kind, buckets, withYear}) {
  const table = document.getElementById("forecast-table");
  const last = Object.keys(shown.by_day).sort().at(-1);
  table.querySelector("caption").textContent = `Records falling due per ${kind} over the next ${shown.days} days`
    + ` from ${calendarDate(shown.start, {withYear: true})}, by data class (sweep dates in UTC)`
    + (last ? `; the last records fall due on ${calendarDate(last, {withYear: true})}` : "");
  table.tHead.replaceChildren(el("tr", {},
    el("th", {scope: "col"}, kind === "day" ? "Sweep date" : kind === "week" ? "Week" : "Month"),
    ...classes.map((name) => el("th", {scope: "col", class: "number"}, name)),
    el("th", {scope: "col", class: "number"}, "Total")));
  const rows = buckets.filter((b) => b.total > 0).map((bucket) => el("tr", {"data-day": bucket.start},
    el("th", {scope: "row"}, bucketLabel(bucket, kind, withYear)),
    ...classes.map((name) => el("td", {class: "number"}, number(bucket.classes[name] ?? 0))),
    el("td", {class: "number"}, number(bucket.total))));
  table.tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", {class: "empty", colspan: classes.length + 2},
                       `Nothing falls due in the next ${shown.days} days`))]));
}

// Terminated accounts no offboarding has been started for: overdue ones first, then those falling due
// within the forecast's days (the forecast answers both).
function fillTerminations(answer) {
  const customers = answer.customers ?? {};
  const rows = [...(answer.overdue_terminations ?? []), ...(answer.terminations_due ?? [])];
  fillRows("terminations", rows, (t) => t.account_id, (t) => [
    accountCell(t.account_id, customers[t.account_id]), t.choice, dateTime(t.terminated_at), dateTime(t.due_at),
    t.overdue ? el("strong", {class: "overdue"}, "overdue: start its offboarding") : "due",
  ], `No terminated account is waiting for its offboarding (checked over the next ${count(answer.days, "day")})`);
}

/** Wire the range selector and redraw when the figure's width changes. */
export function setUpForecast() {
  select().addEventListener("change", () => loadForecast());
  let width = 0;
  new ResizeObserver(([entry]) => {
    const now = Math.round(entry.contentRect.width);
    if (now !== width) {
      width = now;
      draw();
    }
  }).observe(document.getElementById("forecast-figure"));
}
