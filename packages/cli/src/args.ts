import { parseArgs } from 'node:util';
import {
  assertChunkSize,
  DEFAULT_CHUNK_SIZE,
  formatBytes,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  parseByteSize,
  UsageError,
} from '@bucketpipe/core';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; default?: string | boolean }>;

export interface ParsedCommandLine {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** Everything after the first `--`: a command and its arguments. */
  command: string[];
}

/** Splits at the first `--`, then parses strictly: an unknown option is a usage error, not ignored. */
export function parseCommandLine(argv: string[], spec: OptionSpec, commandName: string): ParsedCommandLine {
  const split = argv.indexOf('--');
  const own = split === -1 ? argv : argv.slice(0, split);
  const command = split === -1 ? [] : argv.slice(split + 1);
  try {
    const { values, positionals } = parseArgs({ args: own, options: spec, allowPositionals: true, strict: true });
    return { values: values as ParsedCommandLine['values'], positionals, command };
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split('\n')[0]} (see: bucketpipe ${commandName} --help)`);
  }
}

export function sizeOption(values: ParsedCommandLine['values'], name: string, fallback: number, min = 1): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const bytes = typeof raw === 'string' ? parseByteSize(raw) : null;
  if (bytes === null) throw new UsageError(`--${name} ${String(raw)}: not a size; write it like 16MiB, 512M, 1GiB or a number of bytes`);
  if (bytes < min) throw new UsageError(`--${name} ${String(raw)}: must be at least ${min} bytes`);
  return bytes;
}

/** `--chunk-size`: a size within the protocol's limits (default 16 MiB). */
export function chunkSizeOption(values: ParsedCommandLine['values']): number {
  const chunkSize = sizeOption(values, 'chunk-size', DEFAULT_CHUNK_SIZE, 0);
  try {
    assertChunkSize(chunkSize);
  } catch {
    throw new UsageError(
      `--chunk-size ${String(values['chunk-size'])}: must be from ${formatBytes(MIN_CHUNK_SIZE)} to ${formatBytes(MAX_CHUNK_SIZE)}`,
    );
  }
  return chunkSize;
}

export function integerOption(values: ParsedCommandLine['values'], name: string, fallback: number, min: number, max: number): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const value = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${name} ${String(raw)}: must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/** Durations as `500ms`, `2s`, `1m`; a bare number is seconds. */
export function durationOption(values: ParsedCommandLine['values'], name: string, fallbackMs: number): number {
  const raw = values[name];
  if (raw === undefined) return fallbackMs;
  return parseDurationMs(String(raw), `--${name} ${String(raw)}`);
}

/** `500ms`, `2s`, `1m`, `1h`, or seconds; at least 10 ms. `what` names the value in the usage error. */
export function parseDurationMs(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!match) throw new UsageError(`${what}: not a duration; write it like 500ms, 2s or 1m`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Math.round(Number(match[1]) * unit);
  if (ms < 10) throw new UsageError(`${what}: must be at least 10ms`);
  return ms;
}

export function stringOption(values: ParsedCommandLine['values'], name: string): string | undefined {
  const raw = values[name];
  return typeof raw === 'string' ? raw : undefined;
}

export function exactlyOnePositional(parsed: ParsedCommandLine, commandName: string, what = '<stream-url>'): string {
  if (parsed.positionals.length !== 1) {
    const got = parsed.positionals.length === 0 ? 'none' : parsed.positionals.map((p) => JSON.stringify(p)).join(' ');
    throw new UsageError(`bucketpipe ${commandName} takes one ${what}, got ${got} (see: bucketpipe ${commandName} --help)`);
  }
  return parsed.positionals[0] as string;
}
