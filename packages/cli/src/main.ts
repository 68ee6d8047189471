import { isatty } from 'node:tty';
import { BucketpipeError, ExitCode, UsageError } from '@bucketpipe/core';
import { chooseLogFormat, createLog, LOG_FORMAT_ENV, type Log, type LogFormat, logOptionsHelp, takeLogFormatOption } from './log/index.js';

type Command = (argv: string[], log: Log) => Promise<number>;

/** A command's --help text; a command with subcommands picks it by its arguments. */
type Help = string | ((argv: string[]) => string);

const commands: Record<string, { summary: string; load: () => Promise<{ help: Help; run: Command }> }> = {
  send: {
    summary: 'read a stream (stdin or a command) and upload it as chunks',
    load: async () => {
      const m = await import('./commands/send.js');
      return { help: m.sendHelp, run: m.runSend };
    },
  },
  receive: {
    summary: 'follow a stream and write it, verified and in order, to stdout or a command',
    load: async () => {
      const m = await import('./commands/receive.js');
      return { help: m.receiveHelp, run: m.runReceive };
    },
  },
  relay: {
    summary: 'copy a live stream from one store to another (S3 to GCS), verified, as it is written',
    load: async () => {
      const m = await import('./commands/relay.js');
      return { help: m.relayHelp, run: m.runRelay };
    },
  },
  inspect: {
    summary: 'show where a stream stands: state, sizes, sender heartbeat, receivers',
    load: async () => {
      const m = await import('./commands/inspect.js');
      return { help: m.inspectHelp, run: m.runInspect };
    },
  },
  verify: {
    summary: 'check a whole stream in place: every chunk, continuity, the stream digest',
    load: async () => {
      const m = await import('./commands/verify.js');
      return { help: m.verifyHelp, run: m.runVerify };
    },
  },
  ls: {
    summary: 'list the streams under a prefix: state, size, age, receivers',
    load: async () => {
      const m = await import('./commands/ls.js');
      return { help: m.lsHelp, run: m.runLs };
    },
  },
  replicate: {
    summary: 'run a migration as a live series of ZFS streams: sender and receiver daemons, cut-over',
    load: async () => {
      const m = await import('./commands/replicate.js');
      return { help: m.replicateHelp, run: m.runReplicate };
    },
  },
  rm: {
    summary: 'delete a stream (refuses while a receiver has not finished, unless --force)',
    load: async () => {
      const m = await import('./commands/rm.js');
      return { help: m.rmHelp, run: m.runRm };
    },
  },
};

export const mainHelp = `usage: bucketpipe <command> [options]

Moves a huge byte stream (typically zfs send) through object storage in real time, resumably.

commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`)
  .join('\n')}

Run "bucketpipe <command> --help" for its options. Every command takes --log-format auto|human|json
(env ${LOG_FORMAT_ENV}): human lines on a terminal, JSON lines (one object each) otherwise.

exit status:
  0  success             4  stream conflict (another sender, foreign or malformed manifest)
  1  bug                 5  integrity failure (corrupt, foreign or missing chunk)
  2  usage error         6  source command failed / stream aborted by its sender
  3  store error         7  sink command failed
                         130  interrupted (SIGINT/SIGTERM)
`;

/** Runs one command line; returns the exit status. Every known failure becomes one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(mainHelp);
    return name === undefined ? ExitCode.usage : ExitCode.ok;
  }
  if (name === '--version' || name === '-V') {
    const { version } = await import('./version.js');
    process.stdout.write(`bucketpipe ${version}\n`);
    return ExitCode.ok;
  }
  const command = commands[name];
  const chosen = chooseLog(rest);
  const log = createLog(chosen.format, command ? name : undefined);
  if (chosen.error) return reportFailure(chosen.error, log);
  if (!command) {
    return reportFailure(
      new UsageError(`unknown command "${name}": use one of ${Object.keys(commands).join(', ')} (see: bucketpipe --help)`),
      log,
    );
  }
  const { help, run } = await command.load();
  const own = chosen.argv.includes('--') ? chosen.argv.slice(0, chosen.argv.indexOf('--')) : chosen.argv;
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(`${typeof help === 'function' ? help(own) : help}\n${logOptionsHelp}\n`);
    return ExitCode.ok;
  }
  try {
    return await run(chosen.argv, log);
  } catch (error) {
    return reportFailure(error, log);
  }
}

/** The log format asked for (--log-format, else the environment, else auto) and the arguments without the option. */
function chooseLog(argv: string[]): { format: LogFormat; argv: string[]; error?: unknown } {
  const terminal = isatty(2);
  try {
    const option = takeLogFormatOption(argv);
    return { format: chooseLogFormat(option.value, process.env[LOG_FORMAT_ENV], terminal), argv: option.rest };
  } catch (error) {
    // Said in the format auto would pick: the one asked for is what is wrong.
    return { format: chooseLogFormat(undefined, undefined, terminal), argv, error };
  }
}

export function reportFailure(error: unknown, log: Log): number {
  if (error instanceof BucketpipeError) {
    log.failure(error);
    return error.exitCode;
  }
  log.bug(error);
  return ExitCode.bug;
}
