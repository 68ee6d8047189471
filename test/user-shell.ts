// Running programs the way a user's shell would, outside this repository's npm context: for the
// tests of what a user installs (test/packaging.test.ts, test/release.test.ts).
import { type SpawnOptions, spawn } from 'node:child_process';
import { delimiter } from 'node:path';
import { repoRoot } from './helpers.js';

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/**
 * The environment of a user's shell: none of the npm_* variables that `npm run`/`npx` put around
 * this test (npm_config_local_prefix and friends would change what the child npm does), and no
 * PATH entry into this repository (its node_modules/.bin).
 */
export function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || key === 'INIT_CWD' || key === 'NODE_PATH' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((entry) => entry !== '' && !entry.startsWith(repoRoot))
    .join(delimiter);
  return { ...env, ...extra };
}

export function exec(command: string, args: string[], options: SpawnOptions & { stdoutFd?: number } = {}): Promise<Result> {
  const { stdoutFd, ...spawnOptions } = options;
  const started = Date.now();
  return new Promise((resolveDone, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'], ...spawnOptions });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.on('error', reject);
    child.on('close', (code) => resolveDone({ code, stdout, stderr, seconds: (Date.now() - started) / 1000 }));
  });
}
