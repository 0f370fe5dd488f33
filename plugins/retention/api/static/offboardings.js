// Open offboardings with the way forward: the Airflow run behind each, and Airflow's Required Actions
// when one waits for a second person's approval.
import {get} from "./api.js";
import {accountCell, el, fillRows, sectionError} from "./dom.js";
import {dateTime} from "./format.js";

// What each task state means, for the Tasks cell's help text (a task is one location of the account's data).
const TASK_STATES = {
  planned: "waiting to run (after approval and the effective date)",
  running: "deleting now",
  done: "deleted, waiting for the verifier to re-query the location",
  verified: "re-queried and found empty",
  residue: "data was still found after deletion: needs attention",
  held: "kept: a legal hold covers it",
  skipped: "nothing to do there",
  failed: "failed: see the run's task logs",
};
const TASKS_HELP = "One task per location that holds the account's data (a database table, an object-storage "
  + "prefix, a subprocessor, a backup key). " + Object.entries(TASK_STATES).map(([s, m]) => `${s}: ${m}`).join("; ");

/** "11 tasks planned: one per account location", or "11 tasks: 3 done, 8 planned". */
export function taskWords(tasks) {
  const entries = Object.entries(tasks).filter(([, n]) => n > 0);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  if (!total) return "no tasks yet";
  const noun = total === 1 ? "task" : "tasks";
  if (entries.length === 1) return `${total} ${noun} ${entries[0][0]}: one per account location`;
  return `${total} ${noun}: ${entries.map(([state, n]) => `${n} ${state}`).join(", ")}`;
}

/** An Airflow UI path as a URL in Airflow's window (the top one when framed by Airflow's UI). */
function airflowUrl(path) {
  let origin = window.location.origin;
  try {
    origin = window.top.location.origin;
  } catch {
    // framed by another origin: Airflow's UI is served by this page's own server
  }
  return new URL(path, origin).href;
}

function stageCell(o) {
  if (!o.required_actions_url) return o.stage;
  return el("span", {}, el("span", {class: "stage"}, o.stage), " ",
            el("a", {class: "required-actions", href: airflowUrl(o.required_actions_url), target: "_top"},
               "Approve or reject in Required Actions"));
}

function runCell(o) {
  if (!o.run_url) return el("code", {class: "run-id"}, o.run_id);
  return el("a", {class: "run-link", href: airflowUrl(o.run_url), target: "_top",
                  "aria-label": `Airflow run ${o.run_id} of ${o.dag_id ?? "the offboarding"}`},
            el("code", {class: "run-id"}, o.run_id));
}

export async function loadOffboardings() {
  try {
    const open = await get("offboardings");
    fillRows("offboardings", open, (o) => o.run_id, (o) => [
      accountCell(o.account_id, o.customer), o.choice, dateTime(o.effective_at), stageCell(o),
      el("span", {class: "tasks", title: TASKS_HELP}, taskWords(o.tasks)), runCell(o),
    ], "No offboarding in progress");
  } catch (error) {
    sectionError("offboardings", `The open offboardings could not be loaded: ${error.message}.`);
  }
}
