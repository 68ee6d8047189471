import { UsageError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { chooseLogFormat, takeLogFormatOption } from './log-format.js';

describe('takeLogFormatOption', () => {
  it("takes --log-format F and --log-format=F out of the command's own arguments, the last one counting", () => {
    expect(takeLogFormatOption(['url', '--log-format', 'json', '-q'])).toEqual({ value: 'json', rest: ['url', '-q'] });
    expect(takeLogFormatOption(['--log-format=human', 'url'])).toEqual({ value: 'human', rest: ['url'] });
    expect(takeLogFormatOption(['--log-format=human', 'url', '--log-format', 'json'])).toEqual({ value: 'json', rest: ['url'] });
    expect(takeLogFormatOption(['url'])).toEqual({ value: undefined, rest: ['url'] });
  });

  it('leaves a source or sink command after -- alone', () => {
    expect(takeLogFormatOption(['url', '--', 'tool', '--log-format', 'json'])).toEqual({
      value: undefined,
      rest: ['url', '--', 'tool', '--log-format', 'json'],
    });
    expect(takeLogFormatOption(['url', '--log-format', 'json', '--', 'tool', '--log-format=x'])).toEqual({
      value: 'json',
      rest: ['url', '--', 'tool', '--log-format=x'],
    });
  });

  it('refuses the option without a value', () => {
    for (const argv of [
      ['url', '--log-format'],
      ['--log-format', '-q', 'url'],
      ['--log-format', '--', 'x'],
    ]) {
      expect(() => takeLogFormatOption(argv)).toThrow(new UsageError('--log-format needs a value: auto, human or json'));
    }
  });
});

describe('chooseLogFormat', () => {
  it('auto: human on a terminal, JSON otherwise', () => {
    expect(chooseLogFormat(undefined, undefined, true)).toBe('human');
    expect(chooseLogFormat(undefined, undefined, false)).toBe('json');
    expect(chooseLogFormat('auto', undefined, true)).toBe('human');
    expect(chooseLogFormat(undefined, 'auto', false)).toBe('json');
    expect(chooseLogFormat(undefined, '  ', true)).toBe('human'); // set but empty: not set
  });

  it('the option wins over the environment, which wins over auto', () => {
    expect(chooseLogFormat('json', 'human', true)).toBe('json');
    expect(chooseLogFormat('human', 'json', false)).toBe('human');
    expect(chooseLogFormat(undefined, 'human', false)).toBe('human');
    expect(chooseLogFormat(undefined, 'JSON', true)).toBe('json');
    expect(chooseLogFormat('human', 'not-a-format', false)).toBe('human'); // an unused bad env is no error
  });

  it('refuses anything else, naming where it came from', () => {
    expect(() => chooseLogFormat('xml', undefined, false)).toThrow(
      new UsageError('--log-format xml: not a log format; use auto, human or json'),
    );
    expect(() => chooseLogFormat('', undefined, false)).toThrow(/--log-format : not a log format/);
    expect(() => chooseLogFormat(undefined, 'yaml', false)).toThrow(
      new UsageError('BUCKETPIPE_LOG_FORMAT=yaml: not a log format; use auto, human or json'),
    );
  });
});
