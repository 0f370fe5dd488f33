// Placing a legal hold: an account picker over the registry (ids and customer names), errors beside the
// field they are about, in words, and after success a sentence saying what the hold now keeps.
import {get, outcomeUnknown, post} from "./api.js";
import {accountWords, el} from "./dom.js";
import {count} from "./format.js";
import {announce} from "./notice.js";
import {classWords} from "./holds.js";

const DEBOUNCE_MS = 200;  // one registry query per pause in typing, not one per key
const form = () => document.getElementById("hold-form");
const accountInput = () => document.getElementById("hold-account");
const known = new Map(); // account id -> customer name (or null), from the latest picker answers
let asked = 0;           // the latest picker query: an older answer arriving late is dropped

function fieldError(name, text) {
  const box = form().querySelector(`.field-error[data-for=${name}]`);
  box.textContent = text ?? "";
  form().elements[name]?.setAttribute("aria-invalid", String(Boolean(text)));
}

function clearErrors() {
  for (const box of form().querySelectorAll(".field-error")) fieldError(box.dataset.for, null);
  document.getElementById("hold-error").textContent = "";
}

async function suggest() {
  const query = accountInput().value.trim();
  const mine = ++asked;
  try {
    const accounts = await get(`accounts?q=${encodeURIComponent(query)}&limit=20`);
    if (mine !== asked) return;
    for (const a of accounts) known.set(a.account_id, a.customer);
    document.getElementById("account-options").replaceChildren(...accounts.map((a) =>
      el("option", {value: a.account_id, label: a.customer ?? `${a.account_id} (no customer name)`})));
    showCustomer();
  } catch {
    // No suggestions is not an error a person must act on: the server still checks the id on submit.
  }
}

function showCustomer() {
  const id = accountInput().value.trim();
  const name = document.getElementById("hold-account-name");
  name.textContent = !id ? "" : known.has(id) ? (known.get(id) ?? "no customer name in the registry") : "";
}

/** True when the form holds input that was not sent yet (the page then does not refresh under it). */
export function holdFormHasInput() {
  const {account_id: account, data_class: dataClass, reference, reason} = form().elements;
  return Boolean(account.value || dataClass.value || reference.value || reason.value);
}

async function placeHold(event) {
  event.preventDefault();
  clearErrors();
  document.getElementById("hold-result").textContent = "";  // an earlier hold's sentence is not this one's answer
  const fields = Object.fromEntries(new FormData(form()));
  const body = {account_id: fields.account_id.trim() || null, data_class: fields.data_class || null,
                reference: fields.reference.trim(), reason: fields.reason.trim()};
  let invalid = false;
  if (!body.account_id && !body.data_class) {
    fieldError("account_id", "Choose an account, a data class, or both: a hold on everything is not placed here");
    invalid = true;
  }
  if (!body.reference) { fieldError("reference", "Give a ticket or matter reference"); invalid = true; }
  if (body.reason.length < 3) { fieldError("reason", "Give a reason of at least 3 characters"); invalid = true; }
  if (invalid) {
    form().querySelector("[aria-invalid=true]")?.focus();
    return;
  }
  const submit = form().querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const placed = await post("holds", body);
    const scope = `${accountWords(placed.account_id, placed.customer ?? known.get(placed.account_id))}, `
      + classWords(placed.data_class);
    const sentence = placed.keeps
      ? `Hold ${placed.id} placed on ${scope}: it keeps the ${count(placed.keeps.records, "record")} due now that `
        + "the next sweep would have deleted, and everything in its scope that falls due later"
      : `Hold ${placed.id} placed on ${scope}: it keeps everything in its scope; what is due now could not be `
        + "counted";
    document.getElementById("hold-result").textContent = sentence;
    announce(`Hold ${placed.id} placed: ${scope}`);
    form().reset();
    showCustomer();
    submit.disabled = false;
    await reloadAfterPlace();
  } catch (failure) {
    if (failure.field && form().querySelector(`.field-error[data-for=${failure.field}]`)) {
      fieldError(failure.field, failure.message);
      form().elements[failure.field]?.focus();
    } else {
      document.getElementById("hold-error").textContent = outcomeUnknown(failure)
        ? `${failure.message}: the hold may or may not have been placed. The holds are being reloaded: look for `
          + "it in the list before placing it again."
        : `The hold was not placed: ${failure.message}.`;
      if (outcomeUnknown(failure)) await reloadAfterPlace();
    }
  } finally {
    submit.disabled = false;
  }
}

let reloadAfterPlace = async () => {};

/** Fill the data classes, wire the picker and the form; `reload` refreshes what a new hold changes. */
export async function setUpHoldForm(reload) {
  reloadAfterPlace = reload;
  let timer = null;
  accountInput().addEventListener("input", () => {
    showCustomer();
    fieldError("account_id", null);
    clearTimeout(timer);
    timer = setTimeout(suggest, DEBOUNCE_MS);
  });
  form().addEventListener("submit", placeHold);
  for (const name of ["reference", "reason", "data_class"]) {
    form().elements[name].addEventListener("input", () => {
      fieldError(name, null);
      if (name === "data_class") fieldError("account_id", null);
    });
  }
  suggest();
  const select = document.getElementById("hold-class");
  for (const c of await get("data-classes")) select.append(el("option", {value: c.name, title: c.description}, c.name));
}
