// The page's two live regions: #notice confirms what a person just did, #status says how fresh the data is.
import {clockTime} from "./format.js";

/** Confirm a success in words (screen readers announce it; it stays until the next confirmation). */
export function announce(text) {
  const notice = document.getElementById("notice");
  notice.textContent = "";
  notice.textContent = text;  // emptied first so the same words twice are announced twice
}

/** "Updated 18:02 CET" after a refresh; a failed refresh says so without hiding the sections' own errors. */
export function updated(failures) {
  const status = document.getElementById("status");
  status.textContent = failures ? `Updated ${clockTime()}; ${failures} section${failures === 1 ? "" : "s"} `
    + "could not be loaded (see below)" : `Updated ${clockTime()}`;
  status.classList.toggle("error", failures > 0);
}
