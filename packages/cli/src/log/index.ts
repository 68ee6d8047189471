import { HumanLog } from './human-log.js';
import { JsonLog } from './json-log.js';
import type { Log } from './log.js';
import type { LogFormat } from './log-format.js';

export type { Log, LogFields } from './log.js';
export { chooseLogFormat, LOG_FORMAT_ENV, type LogFormat, logOptionsHelp, takeLogFormatOption } from './log-format.js';

/** The process's log on stderr; `command` is named in every JSON line. */
export function createLog(format: LogFormat, command?: string): Log {
  return format === 'json' ? new JsonLog(command) : new HumanLog(process.stderr);
}
