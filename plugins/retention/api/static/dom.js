// Building the page from data as text only: nothing a record or a form holds is ever parsed as HTML, so
// nothing it holds can run here (the CSP forbids inline script as a second line of defence).

const SVG = "http://www.w3.org/2000/svg";

/** An element ("svg:rect" for SVG) with attributes and children (nodes, or text for anything else). */
export function el(name, attributes = {}, ...children) {
  const node = name.startsWith("svg:") ? document.createElementNS(SVG, name.slice(4)) : document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return node;
}

/** An account as people know it: its id, and the customer's name beside it when the registry has one. */
export function accountCell(accountId, customer) {
  if (!accountId) return el("span", {class: "muted"}, "every account");
  return el("span", {class: "account"}, el("span", {class: "account-id"}, accountId),
            customer ? el("span", {class: "customer"}, customer) : null);
}

/** The account in words, for accessible names and sentences: "acct_1001 (Acme Ltd)". */
export function accountWords(accountId, customer) {
  if (!accountId) return "every account";
  return customer ? `${accountId} (${customer})` : accountId;
}

/**
 * Replace a table's rows: one `tr[data-id]` per item from `cells(item)`, or one worded empty row. A refresh
 * rebuilds rows, so the control that had the keyboard focus gets it back in its new row.
 */
export function fillRows(section, items, idOf, cells, emptyText) {
  const body = document.querySelector(`#${section} tbody`);
  const columns = body.closest("table").querySelectorAll("thead th").length;
  const focused = body.contains(document.activeElement) ? document.activeElement : null;
  const focusKey = focused && [focused.closest("tr")?.dataset.id, focused.className];
  body.replaceChildren(...(items.length
    ? items.map((item) => el("tr", {"data-id": idOf(item)}, ...cells(item).map((cell) => el("td", {}, cell ?? "—"))))
    : [el("tr", {}, el("td", {class: "empty", colspan: columns}, emptyText))]));
  if (focusKey) {
    const row = [...body.rows].find((r) => r.dataset.id === focusKey[0]);
    [...(row?.querySelectorAll("button, a, input") ?? [])].find((c) => c.className === focusKey[1])?.focus();
  }
  sectionError(section, null);
}

/** A section's load failure, shown inside the section (null clears it). */
export function sectionError(section, message) {
  const box = document.querySelector(`#${section} .section-error`);
  box.textContent = message ?? "";
  box.hidden = !message;
}
