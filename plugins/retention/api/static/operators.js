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

// The forecast counts every location of every account (seconds at thousands of accounts): a timed refresh asks
// for it this rarely; a hold placed or released asks at once (reloadChanged).
const FORECAST_REFRESH_SECONDS = 600;

async function loadAll(withForecast = true) {
  // A slow forecast still on its way is left to finish: asking again would only start it over.
  const forecast = withForecast && !forecastLoading() ? loadForecast() : null;
  await Promise.all([forecast, loadOffboardings(), loadCertificates(), loadHolds()]);
  updated(document.querySelectorAll(".section-error:not([hidden])").length);
}

const reloadChanged = () => Promise.all([loadHolds(), loadForecast()]);

// Not while a person is in a dialog or typing a hold: rebuilt rows would move what they are working on.
const busy = () => document.querySelector("dialog[open]") || holdFormHasInput() || document.hidden;

function refreshLater(seconds) {
  const every = Math.max(10, seconds);
  let sinceForecast = 0;
  setInterval(() => {
    if (busy()) return;
    sinceForecast += every;
    const withForecast = sinceForecast >= FORECAST_REFRESH_SECONDS;
    if (withForecast) sinceForecast = 0;
    loadAll(withForecast);
  }, every * 1000);
}

async function main() {
  followTheme();
  const settings = await pageSettings();
  chooseZone(settings);
  window.addEventListener("storage", (event) => {
    if (event.key === TIME_ZONE_KEY && setZone(airflowTimeZone() ?? currentZone())) {
      draw();
      if (!busy()) loadAll(false);  // the times are redrawn in the new zone; the counts did not change
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
