// Light or dark as Airflow shows it, so the page never glares white inside Airflow's dark frame.
// Framed by Airflow's UI (same origin), the parent's <html> carries next-themes' class ("light"/"dark") and
// color-scheme: follow it live. Alone, Airflow's stored choice (next-themes' localStorage key "theme":
// "light", "dark" or "system"), then the system's preference.

const STORAGE_KEY = "theme";  // next-themes' default storageKey, as Airflow's UI bundle uses it
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

function parentRoot() {
  try {
    return window.parent !== window ? window.parent.document.documentElement : null;
  } catch {
    return null;  // framed by another origin: its document is not ours to read
  }
}

function framedTheme(root) {
  if (root.classList.contains("dark")) return "dark";
  if (root.classList.contains("light")) return "light";
  const scheme = root.style.colorScheme;
  return scheme === "dark" || scheme === "light" ? scheme : null;
}

function storedTheme() {
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    return stored === "dark" || stored === "light" ? stored : null;  // "system" or none: the system's
  } catch {
    return null;
  }
}

function apply() {
  const root = parentRoot();
  const theme = (root && framedTheme(root)) ?? storedTheme() ?? (systemDark.matches ? "dark" : "light");
  document.documentElement.dataset.theme = theme;
}

/** Set `html[data-theme]` now and whenever Airflow's theme or the system's preference changes. */
export function followTheme() {
  apply();
  const root = parentRoot();
  if (root) new MutationObserver(apply).observe(root, {attributes: true, attributeFilter: ["class", "style"]});
  systemDark.addEventListener("change", apply);
  window.addEventListener("storage", (event) => { if (event.key === STORAGE_KEY) apply(); });
}
