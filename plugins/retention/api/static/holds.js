// Legal holds in force, and releasing one: a dialog states the hold's scope, reference, reason, who placed it
// and when, and what deletion resumes (the records the next sweep would delete, from the forecast that
// ignores this hold) before anyone confirms. The release is recorded in the signed-in user's name.
import {get, outcomeUnknown, post} from "./api.js";
import {accountCell, accountWords, el, fillRows, sectionError} from "./dom.js";
import {count, dateTime, number} from "./format.js";
import {announce} from "./notice.js";

const dialog = () => document.getElementById("release-dialog");
const field = (name) => dialog().querySelector(`[data-field=${name}]`);
let releasing = null;  // {hold, button, preview}: the hold the dialog is about, the button that opened it
let afterChange = async () => {};  // reloads what a release changes (the holds and the forecast)

export const classWords = (dataClass) => dataClass ?? "all data classes";
const scopeWords = (h) => `${accountWords(h.account_id, h.customer)}, ${classWords(h.data_class)}`;

/** "dpo-7", or "dpo-7 via CLI": the person, without the channel prefix the ledger records. */
export function placedByWords(hold) {
  // The route splits the ledger's staff id ("api:dpo-7") into the person and the channel they acted through.
  const via = hold.placed_via;
  return via === "Airflow" ? hold.placed_by_user : `${hold.placed_by_user}${via ? ` via ${via}` : ""}`;
}

function releaseButton(hold) {
  const button = el("button", {type: "button", class: "release",
                               "aria-label": `Release hold ${hold.id} on ${scopeWords(hold)}`}, "Release…");
  button.addEventListener("click", () => openRelease(hold, button));
  return button;
}

export async function loadHolds() {
  try {
    const holds = await get("holds");
    fillRows("holds", holds, (h) => h.id, (h) => [
      el("code", {}, h.id), accountCell(h.account_id, h.customer), classWords(h.data_class), h.reference,
      h.reason === null ? el("span", {class: "muted"}, "erased") : h.reason, placedByWords(h), dateTime(h.placed_at), releaseButton(h),
    ], "No legal hold in force: the sweep deletes whatever falls due");
  } catch (error) {
    sectionError("holds", `The legal holds could not be loaded: ${error.message}.`);
  }
}

function breakdown(resumes) {
  const accounts = resumes.by_account.map((a) => el("li", {},
    el("span", {class: "account-id"}, a.account_id), a.customer ? ` (${a.customer})` : "", `: ${number(a.records)}`));
  const classes = Object.entries(resumes.by_data_class).sort().map(([name, n]) => el("li", {}, `${name}: ${number(n)}`));
  return [
    ...(accounts.length ? [el("li", {}, "By account:", el("ul", {}, ...accounts))] : []),
    ...(classes.length ? [el("li", {}, "By data class:", el("ul", {}, ...classes))] : []),
  ];
}

/** When the sweep next runs, as Airflow's metadata database says; nothing guessed. */
function nextSweepWords({next_sweep: at, next_sweep_source: source, sweep_paused: paused}) {
  if (at) return dateTime(at);
  if (paused) return "none: the sweep is paused in Airflow, so nothing is deleted until it is unpaused";
  if (source === "airflow") return "none scheduled in Airflow";
  return "not known (Airflow's schedule of the sweep could not be read)";
}

function showPreview(preview) {
  const {hold, resumes} = preview;
  field("scope").textContent = scopeWords(hold);
  field("reference").textContent = hold.reference;
  field("reason").textContent = hold.reason === null ? "(erased)" : hold.reason ?? "—";
  field("placed").textContent = `${placedByWords(hold)}, ${dateTime(hold.placed_at)}`;
  field("next-sweep").textContent = nextSweepWords(preview);
  const records = document.getElementById("release-records");
  records.dataset.records = String(resumes.records);
  // The count is what is due NOW (the forecast's day 0); the sweep plans when it runs, so it also deletes what
  // falls due in the scope meanwhile, and the words say so.
  records.textContent = resumes.records
    ? `${count(resumes.records, "record")} in this hold's scope are due now: the next sweep would delete them, and `
      + "whatever else in its scope falls due before it runs."
    : "0 records in this hold's scope are due now. The next sweep would delete whatever in its scope falls due "
      + "before it runs, and later sweeps what falls due later.";
  document.getElementById("release-breakdown").replaceChildren(...breakdown(resumes));
}

async function openRelease(hold, button) {
  const token = releasing = {hold, button, preview: null};
  for (const name of ["scope", "reference", "reason", "placed", "next-sweep"]) field(name).textContent = "…";
  field("scope").textContent = scopeWords(hold);
  const records = document.getElementById("release-records");
  records.removeAttribute("data-records");
  records.textContent = "Counting what the next sweep would delete once this hold is released…";
  document.getElementById("release-breakdown").replaceChildren();
  document.getElementById("release-reason").value = "";
  document.getElementById("release-error").textContent = "";
  document.getElementById("release-confirm").disabled = true;
  dialog().returnValue = "";
  dialog().showModal();
  document.getElementById("release-reason").focus();
  try {
    const preview = await get(`holds/${encodeURIComponent(hold.id)}/release-preview`);
    if (releasing !== token) return;  // the dialog was closed or opened for another hold meanwhile
    token.preview = preview;
    showPreview(preview);
    document.getElementById("release-confirm").disabled = false;
  } catch (error) {
    if (releasing !== token) return;
    records.textContent = "";
    document.getElementById("release-error").textContent =
      `What a release would resume could not be loaded: ${error.message}. Nothing was released; a release `
      + "waits until its consequences can be shown: close this and try again.";
  }
}

async function confirmRelease(event) {
  event.preventDefault();
  const token = releasing;
  const reason = document.getElementById("release-reason").value.trim();
  const error = document.getElementById("release-error");
  if (reason.length < 3 || reason.length > 500) {
    error.textContent = "Give a reason of 3 to 500 characters (it is recorded in the ledger). Nothing was released.";
    document.getElementById("release-reason").focus();
    return;
  }
  const confirm = document.getElementById("release-confirm");
  confirm.disabled = true;
  try {
    await post(`holds/${encodeURIComponent(token.hold.id)}/release`, {reason});
    if (releasing !== token) {  // the dialog was closed (or opened for another hold) while this was sent
      announce(`Released ${token.hold.id} on ${scopeWords(token.hold)}`);
      await afterChange();
      return;
    }
    releasing = null;
    dialog().close("released");
    announce(`Released ${token.hold.id} on ${scopeWords(token.hold)}: the next sweep deletes what falls due in its `
             + `scope (${count(token.preview.resumes.records, "record")} now)`);
    document.getElementById("holds-title").focus();
    await afterChange();
  } catch (failure) {
    const unknown = outcomeUnknown(failure);
    if (releasing !== token) {  // the dialog was closed, or opened for another hold: say it outside the dialog
      if (unknown) {
        announce(`The release of ${token.hold.id} may or may not have been recorded (${failure.message}); `
                 + "the holds are reloaded: if it is gone from the list, it was released");
        await afterChange();
      }
      return;
    }
    // Set before any await: the dialog may be closed, or opened for another hold, while the lists reload.
    confirm.disabled = token.preview === null;
    error.textContent = unknown
      ? `${failure.message}: the release may or may not have been recorded. The holds are being reloaded: if the `
        + "hold is gone from the list, it was released."
      : `${failure.field === "reason" ? "Reason: " : ""}${failure.message}. Nothing was released.`;
    if (unknown) await afterChange();
  }
}

/** Wire the release dialog once; `reload` refreshes what a release changes. */
export function setUpRelease(reload) {
  afterChange = reload;
  document.getElementById("release-form").addEventListener("submit", confirmRelease);
  document.getElementById("release-cancel").addEventListener("click", () => dialog().close("cancel"));
  dialog().addEventListener("close", () => {
    if (dialog().returnValue === "released") return;
    const opener = releasing?.button;
    releasing = null;
    // The table may have been rebuilt meanwhile: focus the same hold's button in its new row.
    const row = opener && document.querySelector(`#holds tbody tr[data-id="${CSS.escape(opener.closest("tr")?.dataset.id ?? "")}"]`);
    (row?.querySelector("button.release") ?? opener)?.focus();
  });
}
