import { spawn } from 'node:child_process';

export type BoundedRun =
  | { outcome: 'exited'; code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
  | { outcome: 'timed-out' }
  | { outcome: 'not-started'; reason: string };

/** What a short helper command may print that we keep: more is cut off, not buffered. */
const MAX_OUTPUT_CHARS = 64 * 1024;

/**
 * Runs a short helper command to its end, or for at most `timeoutMs`: then it is killed (SIGKILL)
 * and the answer is `timed-out` at once, without waiting for pipes a grandchild may hold open.
 */
export function runBounded(argv: readonly string[], timeoutMs: number): Promise<BoundedRun> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.resolve({ outcome: 'not-started', reason: 'no command' });
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      if (stdout.length < MAX_OUTPUT_CHARS) stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      if (stderr.length < MAX_OUTPUT_CHARS) stderr += text;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({ outcome: 'timed-out' });
    }, timeoutMs);
    child.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ outcome: 'not-started', reason: error.code === 'ENOENT' ? 'command not found' : error.message });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ outcome: 'exited', code, signal, stdout, stderr });
    });
  });
}
