// Deletion certificates with their status in plain sight, and customer links that are minted only after a
// person saw what the customer will get: a partial certificate needs an explicit confirmation first.
import {get, outcomeUnknown, post} from "./api.js";
import {accountCell, accountWords, el, fillRows, sectionError} from "./dom.js";
import {dateTime} from "./format.js";
import {announce} from "./notice.js";

const LINK_HOURS = 168;
const PARTIAL_NOTE = "not everything is certified as erased: the certificate lists each exception and its reason";
const minted = new Map();  // certificate id -> the link made on this page, kept across refreshes
const minting = new Set();  // certificate ids whose link is being made: a rebuilt row's button waits for it

function linkBox(certificate, link) {
  const input = el("input", {class: "link", readonly: true, value: link.url,
                             "aria-label": `Customer link for certificate ${certificate.certificate_id}`});
  const copy = el("button", {type: "button", class: "copy-link",
                             "aria-label": `Copy the link for certificate ${certificate.certificate_id}`}, "Copy");
  copy.addEventListener("click", async () => {
    input.focus();  // the selection a keyboard copy takes is the focused field's
    input.select();
    let copied = true;
    try {
      await navigator.clipboard.writeText(link.url);
    } catch {
      copied = document.execCommand("copy");  // no clipboard API (an insecure context): copy the selected text
    }
    announce(copied ? "Link copied" : "The link could not be copied: it is selected, copy it with the keyboard");
  });
  return el("div", {class: "link-box"}, el("div", {class: "link-row"}, input, copy),
            el("span", {class: "link-expiry"}, `Expires ${dateTime(link.expires_at)}`));
}

async function mint(certificate, cell, acknowledgePartial) {
  const error = cell.querySelector(".field-error");
  error.textContent = "";
  try {
    const made = await post(`certificates/${encodeURIComponent(certificate.certificate_id)}/links`,
                            {hours: LINK_HOURS, acknowledge_partial: acknowledgePartial});
    const link = {url: new URL(made.path, window.location.origin).href, expires_at: made.expires_at};
    minted.set(certificate.certificate_id, link);
    if (cell.isConnected) {
      cell.replaceChildren(linkBox(certificate, link));
      cell.querySelector("input.link").focus();
      cell.querySelector("input.link").select();
    } else {
      await loadCertificates();  // a refresh rebuilt the rows meanwhile: draw the new row with its link
    }
    announce(`Customer link for certificate ${certificate.certificate_id} created; it expires `
             + `${dateTime(made.expires_at)}`);
  } catch (failure) {
    const text = outcomeUnknown(failure)
      ? `${failure.message}: a link may or may not have been created (each one made is in the ledger as `
        + "certificate.link_created)"
      : `No link was created: ${failure.message}.`;
    if (cell.isConnected) error.textContent = text;
    else announce(`Certificate ${certificate.certificate_id}: ${text}`);  // a refresh rebuilt the row meanwhile
  }
}

/** The partial-certificate dialog: resolves true on confirm, false on cancel or Escape. */
function confirmPartial(certificate) {
  const dialog = document.getElementById("link-dialog");
  dialog.querySelector("[data-field=certificate]").textContent =
    `${certificate.certificate_id} for ${accountWords(certificate.account_id, certificate.customer)}`;
  return new Promise((resolve) => {
    const confirm = document.getElementById("link-confirm"), cancel = document.getElementById("link-cancel");
    const done = (answer) => () => { dialog.close(answer); };
    const onConfirm = done("confirm"), onCancel = done("cancel");
    confirm.addEventListener("click", onConfirm);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("close", () => {
      confirm.removeEventListener("click", onConfirm);
      cancel.removeEventListener("click", onCancel);
      resolve(dialog.returnValue === "confirm");
    }, {once: true});
    dialog.returnValue = "";
    dialog.showModal();
    cancel.focus();  // the safe choice has the focus
  });
}

function linkCell(certificate) {
  if (certificate.revoked) return "—";
  const link = minted.get(certificate.certificate_id);
  if (link) return el("div", {}, linkBox(certificate, link));
  const button = el("button", {type: "button", class: "make-link",
                               "aria-label": `Create a customer link for certificate ${certificate.certificate_id} `
                                 + `(${accountWords(certificate.account_id, certificate.customer)})`},
                    "Create 7-day link");
  const cell = el("div", {}, button, el("span", {class: "field-error", role: "alert"}));
  button.addEventListener("click", async () => {
    if (certificate.status === "partial") {
      const confirmed = await confirmPartial(certificate);
      button.focus();
      if (!confirmed) return;
    }
    if (minting.has(certificate.certificate_id)) return;
    // One click, one link: a second click while this one is sent, here or on a row a refresh rebuilt, would
    // mint another.
    minting.add(certificate.certificate_id);
    button.disabled = true;
    try {
      await mint(certificate, cell, certificate.status === "partial");
    } finally {
      minting.delete(certificate.certificate_id);
      button.disabled = false;
    }
  });
  return cell;
}

function statusCell(certificate) {
  const status = el("span", {class: `status status-${certificate.status}`}, certificate.status);
  if (certificate.status !== "partial") return status;
  return el("span", {}, status, el("span", {class: "status-note"}, PARTIAL_NOTE));
}

export async function loadCertificates() {
  try {
    const issued = await get("certificates");
    fillRows("certificates", issued, (c) => c.certificate_id, (c) => [
      el("code", {class: "certificate-id"}, c.certificate_id), accountCell(c.account_id, c.customer),
      (c.kind ?? "account_deletion").replaceAll("_", " "), dateTime(c.issued_at), statusCell(c),
      c.revoked ? el("span", {title: `revoked: ${c.revoked}`}, "revoked") : "valid", linkCell(c),
    ], "No certificate issued yet");
  } catch (error) {
    sectionError("certificates", `The certificates could not be loaded: ${error.message}.`);
  }
}
