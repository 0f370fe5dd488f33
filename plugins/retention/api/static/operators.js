// The operator page's start: theme and time zone as Airflow shows them, every section's first load, then
// a refresh every `refresh_seconds` (never under an open dialog or a half-filled form).
import {get} from "./api.js";
import {loadCertificates} from "./certificates.js";
import {draw, forecastLoading, loadForecast, setUpForecast} from "./forecast.js";
import {currentZone, setZone} from "./format.js";
import {holdFormHasInput, setUpHoldForm} from "./hold-form.js";
import {loadHolds, setUpRelease} from "./holds.js";
import {updated} from "./notice.js";
import {loadOffboardings} from "./offboardings.js";
import {followTheme} from "./theme.js";

const TIME_ZONE_KEY = "timezone";  // Airflow's UI stores the user's chosen zone here, JSON-encoded
const DEFAULT_SETTINGS = {default_time_zone: null, refresh_seconds: 60};

/** The zone the person chose in Airflow's UI (same origin, so the same localStorage), if any. */
function airflowTimeZone() {
  try {
    const stored = window.localStorage.getItem(TIME_ZONE_KEY);
    if (!stored) return null;
    try {
      return JSON.parse(stored);
    } catch {
      return stored;
    }
  } catch {
    return null;
  }
}

async function pageSettings() {
  try {
    return {...DEFAULT_SETTINGS, ...(await get("page-settings"))};
  } catch {
    return DEFAULT_SETTINGS;  // the page still works: the browser's zone, the default refresh
  }
}

function chooseZone(settings) {
  for (const zone of [airflowTimeZone(), settings.default_time_zone]) {
    if (typeof zone === "string" && setZone(zone)) return;
  }
  setZone(currentZone());  // the browser's own
}

async function loadAll() {
  // A slow forecast still on its way is left to finish: asking again would only start it over.
  await Promise.all([forecastLoading() ? null : loadForecast(), loadOffboardings(), loadCertificates(), loadHolds()]);
  updated(document.querySelectorAll(".section-error:not([hidden])").length);
}

const reloadChanged = () => Promise.all([loadHolds(), loadForecast()]);

function refreshLater(seconds) {
  setInterval(() => {
    const busy = document.querySelector("dialog[open]") || holdFormHasInput() || document.hidden;
    if (!busy) loadAll();
  }, Math.max(10, seconds) * 1000);
}

async function main() {
  followTheme();
  const settings = await pageSettings();
  chooseZone(settings);
  window.addEventListener("storage", (event) => {
    if (event.key === TIME_ZONE_KEY && setZone(airflowTimeZone() ?? currentZone())) {
      draw();
      loadAll();
    }
  });
  setUpForecast();
  setUpRelease(reloadChanged);
  const holdForm = setUpHoldForm(reloadChanged).catch((error) => {
    document.getElementById("hold-error").textContent =
      `The data classes could not be loaded (${error.message}): only a hold on an account can be placed now.`;
  });
  await Promise.all([loadAll(), holdForm]);
  document.body.dataset.ready = "true";
  refreshLater(settings.refresh_seconds);
}

main();
