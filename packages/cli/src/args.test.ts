import { ExitCode, UsageError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import {
  durationOption,
  exactlyOnePositional,
  integerOption,
  type OptionSpec,
  type ParsedCommandLine,
  parseCommandLine,
  sizeOption,
  stringOption,
} from './args.js';

const spec: OptionSpec = {
  concurrency: { type: 'string' },
  buffer: { type: 'string' },
  'poll-interval': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
};

function usageError(run: () => unknown): UsageError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    const usage = error as UsageError;
    expect(usage.code).toBe('BP_USAGE');
    expect(usage.exitCode).toBe(ExitCode.usage);
    expect(usage.message).not.toContain('\n');
    return usage;
  }
  throw new Error('expected a UsageError');
}

const values = (v: ParsedCommandLine['values']) => v;

describe('parseCommandLine', () => {
  it('parses options and positionals', () => {
    const parsed = parseCommandLine(['s3://b/p', '--concurrency', '4', '-q', '--buffer=1GiB'], spec, 'receive');
    expect(parsed).toEqual({
      values: { concurrency: '4', quiet: true, buffer: '1GiB' },
      positionals: ['s3://b/p'],
      command: [],
    });
  });

  it('splits at the first --: everything after it is the command, verbatim', () => {
    const parsed = parseCommandLine(['/mnt/x', '-q', '--', 'zfs', 'recv', '-F', '--unknown', '--', 'tank/pg'], spec, 'receive');
    expect(parsed.values).toEqual({ quiet: true });
    expect(parsed.positionals).toEqual(['/mnt/x']);
    expect(parsed.command).toEqual(['zfs', 'recv', '-F', '--unknown', '--', 'tank/pg']);
  });

  it('gives an empty command for a trailing --', () => {
    expect(parseCommandLine(['/mnt/x', '--'], spec, 'send').command).toEqual([]);
  });

  it('rejects unknown options with a one-line usage error pointing at --help', () => {
    for (const argv of [['--nope'], ['/mnt/x', '-x'], ['--Concurrency', '4'], ['--nope', '--', 'zfs']]) {
      const error = usageError(() => parseCommandLine(argv, spec, 'receive'));
      expect(error.message).toMatch(/\(see: bucketpipe receive --help\)$/);
    }
  });

  it('rejects a string option without a value and a boolean option with one', () => {
    usageError(() => parseCommandLine(['/mnt/x', '--concurrency'], spec, 'send'));
    usageError(() => parseCommandLine(['/mnt/x', '--concurrency', '--', 'cmd'], spec, 'send'));
    usageError(() => parseCommandLine(['/mnt/x', '--quiet=yes'], spec, 'send'));
  });
});

describe('sizeOption', () => {
  it('uses the fallback when the option is absent', () => {
    expect(sizeOption(values({}), 'buffer', 123)).toBe(123);
  });

  it('reads sizes', () => {
    expect(sizeOption(values({ buffer: '16MiB' }), 'buffer', 0)).toBe(16 * 1024 * 1024);
    expect(sizeOption(values({ buffer: '512M' }), 'buffer', 0)).toBe(512_000_000);
    expect(sizeOption(values({ buffer: '4096' }), 'buffer', 0)).toBe(4096);
  });

  it('rejects text that is not a size', () => {
    for (const raw of ['lots', '-1MiB', '', '1e6']) {
      const error = usageError(() => sizeOption(values({ buffer: raw }), 'buffer', 0));
      expect(error.message).toBe(`--buffer ${raw}: not a size; write it like 16MiB, 512M, 1GiB or a number of bytes`);
    }
    usageError(() => sizeOption(values({ buffer: true }), 'buffer', 0));
  });

  it('rejects sizes below the minimum (1 byte by default)', () => {
    expect(usageError(() => sizeOption(values({ buffer: '0' }), 'buffer', 5)).message).toBe('--buffer 0: must be at least 1 bytes');
    expect(usageError(() => sizeOption(values({ buffer: '64KiB' }), 'buffer', 5, 65_537)).message).toBe(
      '--buffer 64KiB: must be at least 65537 bytes',
    );
    expect(sizeOption(values({ buffer: '64KiB' }), 'buffer', 5, 65_536)).toBe(65_536);
  });
});

describe('integerOption', () => {
  it('uses the fallback when absent and reads whole numbers in range', () => {
    expect(integerOption(values({}), 'concurrency', 8, 1, 256)).toBe(8);
    expect(integerOption(values({ concurrency: '1' }), 'concurrency', 8, 1, 256)).toBe(1);
    expect(integerOption(values({ concurrency: ' 256 ' }), 'concurrency', 8, 1, 256)).toBe(256);
    expect(integerOption(values({ concurrency: '-7' }), 'concurrency', 1, -7, 19)).toBe(-7);
  });

  it('rejects anything else', () => {
    for (const raw of ['0', '257', '1.5', '1e2', '0x10', 'eight', '', '99999999999999999999']) {
      const error = usageError(() => integerOption(values({ concurrency: raw }), 'concurrency', 8, 1, 256));
      expect(error.message).toBe(`--concurrency ${raw}: must be a whole number from 1 to 256`);
    }
    usageError(() => integerOption(values({ concurrency: true }), 'concurrency', 8, 1, 256));
  });
});

describe('durationOption', () => {
  it('reads ms, s, m, h and bare seconds', () => {
    const cases: Array<[string, number]> = [
      ['500ms', 500],
      ['2s', 2000],
      ['2', 2000],
      ['1.5s', 1500],
      ['0.25', 250],
      ['1m', 60_000],
      ['1h', 3_600_000],
      ['10ms', 10],
      [' 3 s ', 3000],
    ];
    for (const [raw, ms] of cases) expect([raw, durationOption(values({ 'poll-interval': raw }), 'poll-interval', 1)]).toEqual([raw, ms]);
    expect(durationOption(values({}), 'poll-interval', 1234)).toBe(1234);
  });

  it('rejects what is not a duration', () => {
    for (const raw of ['soon', '-1s', '1d', '1 sec', '', 'ms']) {
      const error = usageError(() => durationOption(values({ 'poll-interval': raw }), 'poll-interval', 1));
      expect(error.message).toBe(`--poll-interval ${raw}: not a duration; write it like 500ms, 2s or 1m`);
    }
  });

  it('rejects durations under 10 ms', () => {
    for (const raw of ['9ms', '0', '0.001s']) {
      const error = usageError(() => durationOption(values({ 'poll-interval': raw }), 'poll-interval', 1));
      expect(error.message).toBe(`--poll-interval ${raw}: must be at least 10ms`);
    }
  });
});

describe('stringOption and exactlyOnePositional', () => {
  it('returns string values only', () => {
    expect(stringOption(values({ id: 'r1' }), 'id')).toBe('r1');
    expect(stringOption(values({ id: true }), 'id')).toBeUndefined();
    expect(stringOption(values({}), 'id')).toBeUndefined();
  });

  it('requires exactly one positional', () => {
    const parsed = (positionals: string[]): ParsedCommandLine => ({ values: {}, positionals, command: [] });
    expect(exactlyOnePositional(parsed(['s3://b/p']), 'send')).toBe('s3://b/p');
    expect(usageError(() => exactlyOnePositional(parsed([]), 'send')).message).toBe(
      'bucketpipe send takes one <stream-url>, got none (see: bucketpipe send --help)',
    );
    expect(usageError(() => exactlyOnePositional(parsed(['a', 'b c']), 'receive')).message).toBe(
      'bucketpipe receive takes one <stream-url>, got "a" "b c" (see: bucketpipe receive --help)',
    );
  });
});
