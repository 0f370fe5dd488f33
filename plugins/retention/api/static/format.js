// Times in the zone the person reads Airflow in, always with the zone's abbreviation so nobody has to
// guess; calendar dates (the forecast's sweep days) as dates, with the year when a range crosses one.

let zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** The zone every time on the page is shown in (an IANA name; an unknown one is refused). */
export function setZone(name) {
  try {
    new Intl.DateTimeFormat("en", {timeZone: name});
  } catch {
    return false;
  }
  zone = name;
  document.documentElement.dataset.timeZone = name;
  return true;
}

export const currentZone = () => zone;

/** "CET", "EST", "UTC"; English short names where ICU has one, else its "GMT+1" form. */
export function zoneAbbreviation(at = new Date()) {
  const short = (locale) => new Intl.DateTimeFormat(locale, {timeZone: zone, timeZoneName: "short"})
    .formatToParts(at).find((part) => part.type === "timeZoneName")?.value;
  const american = short("en-US");
  return american && !/^GMT[+-]/.test(american) ? american : short("en-GB") ?? american ?? zone;
}

const parse = (iso) => (iso ? new Date(iso) : null);

/** "30 Nov 2026, 18:40 CET" */
export function dateTime(iso) {
  const at = parse(iso);
  if (!at || Number.isNaN(at.getTime())) return "—";
  const text = new Intl.DateTimeFormat("en-GB", {timeZone: zone, day: "numeric", month: "short", year: "numeric",
                                                 hour: "2-digit", minute: "2-digit", hourCycle: "h23"}).format(at);
  return `${text} ${zoneAbbreviation(at)}`;
}

/** "18:40 CET" */
export function clockTime(at = new Date()) {
  const text = new Intl.DateTimeFormat("en-GB", {timeZone: zone, hour: "2-digit", minute: "2-digit",
                                                 hourCycle: "h23"}).format(at);
  return `${text} ${zoneAbbreviation(at)}`;
}

/** A calendar date ("2026-11-30") as "30 Nov" or "30 Nov 2026"; `style: "month"` gives "Nov" / "Nov 2026". */
export function calendarDate(isoDate, {withYear = true, style = "day"} = {}) {
  const options = style === "month" ? {month: "short"} : {day: "numeric", month: "short"};
  if (withYear) options.year = "numeric";
  // A calendar date has no zone: format it as the UTC midnight it is keyed by, so no zone shifts its day.
  return new Intl.DateTimeFormat("en-GB", {...options, timeZone: "UTC"}).format(new Date(`${isoDate}T00:00:00Z`));
}

/** Whole numbers with thousands separators: "12,345". */
export const number = (n) => Number(n).toLocaleString("en");

/** "1 record", "12 records" */
export const count = (n, noun, plural = `${noun}s`) => `${number(n)} ${n === 1 ? noun : plural}`;
