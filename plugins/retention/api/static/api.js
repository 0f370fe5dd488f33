// The staff routes next to the page (served at <prefix>/ui/, the routes at <prefix>/), authenticated by
// Airflow's own session cookie. Failures become sentences a person can act on, never raw JSON or bare codes.

const BASE = new URL("..", document.baseURI);

/** A failed call: `field` names the form field a 422's "field: message" detail is about (else null). */
export class ApiError extends Error {
  constructor(message, {status = 0, field = null} = {}) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

/** A 5xx or no answer at all: a POST may or may not have been carried out (the server may have acted before a
 * proxy timed out or the connection dropped), so the page reloads the list instead of saying nothing changed. */
export const outcomeUnknown = (error) => error.status === 0 || error.status >= 500;

function detailText(detail) {
  if (typeof detail === "string") return detail;
  // FastAPI's validation list: "field: message" for the first entry, as the routes word their own.
  if (Array.isArray(detail) && detail.length) {
    const first = detail[0];
    const field = (first.loc ?? []).filter((part) => part !== "body").join(".");
    return field ? `${field}: ${first.msg}` : String(first.msg);
  }
  return null;
}

function failure(status, detail) {
  const text = detailText(detail);
  if (status === 401) return new ApiError("your Airflow session has ended: sign in to Airflow again", {status});
  if (status === 403) return new ApiError(`you are not allowed to do this (${text ?? "missing permission"})`, {status});
  if (status >= 500) return new ApiError(`the server failed (HTTP ${status})`, {status});
  const match = text?.match(/^([a-z_]+): (.*)$/s);
  if (match) return new ApiError(match[2], {status, field: match[1]});
  return new ApiError(text ?? `the server refused the request (HTTP ${status})`, {status});
}

async function call(path, options) {
  let response;
  try {
    response = await fetch(new URL(path, BASE), {credentials: "same-origin", ...options});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("the server could not be reached", {status: 0});
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw failure(response.status, body?.detail);
  return body;
}

/** GET a route; `signal` aborts it (the promise then rejects with an AbortError). */
export const get = (path, signal = undefined) => call(path, {signal});

/** POST a JSON body (the routes refuse any other content type). */
export const post = (path, body) => call(path, {
  method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
