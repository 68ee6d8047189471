/**
 * RFC 3339 date-times as the manifest (docs/FORMAT.md §4.1) allows them: `YYYY-MM-DDTHH:MM:SS`,
 * an optional fraction, and a zone (`Z` or `±HH:MM`), with an uppercase `T` and `Z` and real
 * calendar values. Date.parse alone is looser (it reads `2026-12-04`, RFC 1123 dates, times
 * without a zone, and rolls `02-30` over into March); another implementation must not have to
 * copy a JavaScript engine to read a manifest.
 */
const pattern = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))$/;

export function isRfc3339Time(value: unknown): value is string {
  if (typeof value !== 'string') return false;
  const match = pattern.exec(value);
  if (!match) return false;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const zoneHour = match[9] === undefined ? 0 : Number(match[9]);
  const zoneMinute = match[10] === undefined ? 0 : Number(match[10]);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return false;
  return hour <= 23 && minute <= 59 && second <= 59 && zoneHour <= 23 && zoneMinute <= 59;
}

function daysIn(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] as number;
}
