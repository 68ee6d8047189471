import { UsageError } from '@bucketpipe/core';

/** human: `bucketpipe: …` lines (and a live progress bar on a terminal); json: one JSON object per line. */
export type LogFormat = 'human' | 'json';

export const LOG_FORMAT_ENV = 'BUCKETPIPE_LOG_FORMAT';
const OPTION = '--log-format';
const CHOICES = 'auto, human or json';

export const logOptionsHelp = `log options (every command):
  --log-format F        how stderr is written: auto (default), human or json; env
                        ${LOG_FORMAT_ENV} (the option wins). human: "bucketpipe: …" lines, and on a
                        terminal a live progress line (bytes, MB/s; with a known size a bar, percent
                        and ETA). json: one JSON object per line (pino: time, level, event, msg and
                        fields; errors carry code and exitCode; a progress event every 10s).
                        auto: human when stderr is a terminal, json otherwise (a pipe, journald)`;

/**
 * Takes `--log-format F` or `--log-format=F` out of a command's arguments: only from its own ones,
 * before a `--` that starts a source or sink command. The last one given counts.
 */
export function takeLogFormatOption(argv: readonly string[]): { value: string | undefined; rest: string[] } {
  const split = argv.indexOf('--');
  const own = split === -1 ? argv : argv.slice(0, split);
  const rest: string[] = [];
  let value: string | undefined;
  for (let i = 0; i < own.length; i++) {
    const arg = own[i] as string;
    if (arg === OPTION) {
      const next = own[i + 1];
      if (next === undefined || next.startsWith('-')) throw new UsageError(`${OPTION} needs a value: ${CHOICES}`);
      value = next;
      i++;
    } else if (arg.startsWith(`${OPTION}=`)) {
      value = arg.slice(OPTION.length + 1);
    } else {
      rest.push(arg);
    }
  }
  return { value, rest: split === -1 ? rest : [...rest, ...argv.slice(split)] };
}

/** The option, else the environment variable, else auto: human on a terminal, JSON elsewhere. */
export function chooseLogFormat(option: string | undefined, env: string | undefined, stderrIsTerminal: boolean): LogFormat {
  const given = option ?? (env?.trim() === '' ? undefined : env?.trim());
  const where = option !== undefined ? `${OPTION} ${option}` : `${LOG_FORMAT_ENV}=${env}`;
  switch (given?.toLowerCase()) {
    case undefined:
    case 'auto':
      return stderrIsTerminal ? 'human' : 'json';
    case 'human':
      return 'human';
    case 'json':
      return 'json';
    default:
      throw new UsageError(`${where}: not a log format; use ${CHOICES}`);
  }
}
