const byteUnits: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1000 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * Parses a size the way operators type it: `16MiB`, `512M`, `1GiB`, `1.5G`, `4096`.
 * Decimal units (k, M, MB, G…) are powers of 1000, binary ones (KiB, MiB, GiB…) of 1024.
 * Returns null when the text is not a size.
 */
export function parseByteSize(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return null;
  const unit = byteUnits[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return null;
  if (unit === 1 && !Number.isInteger(Number(match[1]))) return null;
  const bytes = Math.round(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

const ratePrefixes: Record<string, number> = {
  '': 1,
  k: 1000,
  ki: 1024,
  m: 1000 ** 2,
  mi: 1024 ** 2,
  g: 1000 ** 3,
  gi: 1024 ** 3,
  t: 1000 ** 4,
  ti: 1024 ** 4,
};

/** How to write a rate, for error messages. */
export const RATE_SYNTAX = 'write it like 200MB/s (megabytes), 50MiB/s, 1Gbit/s or 1Gbps (bits), or bytes per second';

/**
 * Parses a rate the way operators type it, in bytes per second: `200MB/s`, `200M`, `50MiB/s`,
 * `1Gbit/s`, `800Mbps`, `20MBps`, `1000000`. The `/s` is optional. Decimal prefixes are powers of
 * 1000, binary ones (Ki, Mi, Gi) of 1024. A lone lowercase `b` (`200Mb/s`) is refused: bits or
 * bytes, an 8x difference, is spelled out as `bit`/`bps` or `B`. Null when the text is not a
 * positive rate.
 */
export function parseRate(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*?)([Bb][Ii][Tt][Ss]?|bps|Bps|B|b)?(\/s)?\s*$/.exec(text);
  if (!match) return null;
  const [, number = '', prefix = '', unit = '', perSecond] = match;
  if (unit === 'b' || (perSecond && unit.endsWith('ps'))) return null;
  const scale = ratePrefixes[prefix.toLowerCase()];
  if (scale === undefined) return null;
  const bytes = (Number(number) * scale) / (unit === 'bps' || unit.toLowerCase().startsWith('bit') ? 8 : 1);
  return Number.isFinite(bytes) && bytes > 0 ? bytes : null;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  // Pick the unit after rounding, so 1048575 B reads "1.00 MiB", not "1024.0 KiB".
  while (unit < units.length - 1 && Math.abs(Number(value.toFixed(value < 10 ? 2 : 1))) >= 1024) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(Math.abs(value) < 10 ? 2 : 1)} ${units[unit]}`;
}

/** Megabytes (10^6 bytes) per second, as disks and networks are quoted. */
export function formatRate(bytes: number, seconds: number): string {
  return `${seconds > 0 ? (bytes / 1e6 / seconds).toFixed(1) : '0.0'} MB/s`;
}
