// The release, as a new user and an operator meet it (README, docs/OPERATIONS.md §1): a fresh
// clone of this repository's HEAD (commit first: uncommitted changes are not in the clone), then
// `npm ci && npm run build` and `npx bucketpipe`, then `npm run release`; the tarball extracted
// where no node_modules is above it runs a live send and receive with the npm registry unreachable;
// the .deb installs into this machine with dpkg (as root), its units pass `systemd-analyze verify`,
// and `dpkg -r` leaves nothing but /etc/bucketpipe. About 3 minutes: the clone's `npm ci` compiles
// the zstd binding (77 s here), npm run release takes 50 s, mostly compressing the .deb's Node.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MiB, outputFile, repoRoot, sha256File, summaryOf, tempDir, writeMixedStream } from './helpers.js';
import { exec, type Result, userEnv } from './user-shell.js';

const hasDpkgDeb = spawnSync('sh', ['-c', 'command -v dpkg-deb'], { stdio: 'ignore' }).status === 0;
const isRoot = process.getuid?.() === 0;
/** A bucketpipe package this test did not install: the test must not replace or purge it. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a template
const foreignPackage = spawnSync('dpkg-query', ['-W', '-f=${Status}', 'bucketpipe'], { encoding: 'utf8' }).stdout?.includes('installed');
const units = ['send', 'receive', 'relay', 'replicate-send', 'replicate-receive'].map((role) => `bucketpipe-${role}@.service`);

/** A file or a symbolic link that is not one to a directory (/lib is a link to usr/lib on a merged /usr). */
function isFileOrLink(path: string): boolean {
  const entry = lstatSync(path, { throwIfNoEntry: false });
  if (!entry) return false;
  if (entry.isSymbolicLink()) return statSync(path, { throwIfNoEntry: false })?.isDirectory() !== true;
  return !entry.isDirectory();
}

function ok(result: Result, what: string): Result {
  if (result.code !== 0) throw new Error(`${what} failed (${result.code}):\n${result.stderr.slice(-4000)}`);
  return result;
}

describe.skipIf(!hasDpkgDeb)('release: a fresh clone builds, runs npx bucketpipe, and npm run release makes a tarball and a .deb', () => {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'packages/cli/package.json'), 'utf8')) as { version: string };
  let work: { path: string; cleanup: () => Promise<void> };
  let clone: string;
  let npxVersion: Result;
  let tarball: string;
  let deb: string;

  beforeAll(async () => {
    work = await tempDir('release');
    clone = join(work.path, 'clone');
    const env = userEnv({ npm_config_update_notifier: 'false', TURBO_TELEMETRY_DISABLED: '1' });
    ok(await exec('git', ['clone', '--quiet', repoRoot, clone], { env }), 'git clone');
    const steps: Array<[string, string[]]> = [
      ['npm', ['ci', '--no-audit', '--no-fund']],
      ['npm', ['run', 'build']],
    ];
    for (const [command, args] of steps) {
      const result = ok(await exec(command, args, { cwd: clone, env }), `${command} ${args.join(' ')}`);
      console.log(`release: ${command} ${args.join(' ')} in a fresh clone took ${result.seconds.toFixed(1)} s`);
    }
    npxVersion = await exec('npx', ['--no-install', 'bucketpipe', '--version'], { cwd: clone, env });
    const release = ok(await exec('npm', ['run', 'release'], { cwd: clone, env }), 'npm run release');
    console.log(`release: npm run release took ${release.seconds.toFixed(1)} s`);
    tarball = join(clone, 'release', `bucketpipe-${version}-linux-x64.tar.gz`);
    deb = join(clone, 'release', `bucketpipe_${version}_amd64.deb`);
    for (const file of [tarball, deb]) {
      const { size } = statSync(file);
      console.log(`release: ${file.slice(clone.length + 1)} is ${(size / MiB).toFixed(1)} MiB`);
    }
  }, 900_000);

  afterAll(async () => {
    await work?.cleanup();
  });

  test('npm ci && npm run build leave a working npx bucketpipe', () => {
    expect(npxVersion, npxVersion.stderr).toMatchObject({ code: 0, stdout: `bucketpipe ${version}\n` });
  });

  test('the tarball, extracted where no node_modules is above it, sends and receives live with the registry unreachable', async () => {
    const place = join(work.path, 'opt');
    await mkdir(place);
    for (let dir = place; dir !== dirname(dir); dir = dirname(dir)) expect(existsSync(join(dir, 'node_modules')), dir).toBe(false);
    ok(await exec('tar', ['xzf', tarball, '-C', place]), 'tar xzf');
    expect(readdirSync(place)).toEqual([`bucketpipe-${version}`]);
    const bin = join(place, `bucketpipe-${version}`, 'bin', 'bucketpipe');
    const tree = await exec('tar', ['tzf', tarball]);
    for (const devOnly of ['typescript', 'vitest', '@biomejs', 'turbo', 'eslint', '@bucketpipe/store-testkit', 'packages/store-testkit']) {
      expect(
        tree.stdout.split('\n').filter((path) => path.includes(`/${devOnly}/`)),
        devOnly,
      ).toEqual([]);
    }
    // Nothing may come from a registry: an unreachable one, and npm told to stay offline.
    const env = userEnv({ npm_config_registry: 'http://127.0.0.1:9', npm_config_offline: 'true' });
    const input = join(work.path, 'input.bin');
    const output = join(work.path, 'output.bin');
    const stream = join(work.path, 'stream');
    const expected = await writeMixedStream(input, 5 * MiB + 4321, 11);
    const out = await outputFile(output);
    try {
      const receiver = exec(bin, ['receive', stream, '--poll-interval', '250ms'], { cwd: place, env, stdoutFd: out.fd });
      const sender = await exec(bin, ['send', stream, '--chunk-size', '1MiB', '--manifest-interval', '250ms', '--', 'cat', input], {
        cwd: place,
        env,
      });
      expect(sender.code, sender.stderr).toBe(0);
      const received = await receiver;
      expect(received.code, received.stderr).toBe(0);
      expect(summaryOf(received.stderr)).toMatchObject({ rawBytes: 5 * MiB + 4321, chunks: 6 });
    } finally {
      await out.close();
    }
    expect(await sha256File(output)).toBe(expected);
  });

  describe.skipIf(!isRoot || foreignPackage)(
    'the .deb (installs into this machine: root, and no bucketpipe package installed before)',
    () => {
      afterAll(async () => {
        // Whatever happened, leave the machine as it was.
        await exec('dpkg', ['--purge', 'bucketpipe']);
      });

      test('dpkg -i installs it, its units verify, /usr/bin/bucketpipe answers, dpkg -r leaves only /etc/bucketpipe', async () => {
        const contents = ok(await exec('dpkg-deb', ['-c', deb]), 'dpkg-deb -c').stdout;
        for (const unit of units) expect(contents, unit).toContain(`./lib/systemd/system/${unit}`);
        ok(await exec('dpkg', ['-i', deb]), 'dpkg -i');
        const installed = ok(await exec('dpkg', ['-L', 'bucketpipe']), 'dpkg -L')
          .stdout.split('\n')
          .filter(Boolean);

        const answer = await exec('/usr/bin/bucketpipe', ['--version'], {
          cwd: '/',
          env: userEnv({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }),
        });
        expect(answer).toMatchObject({ code: 0, stdout: `bucketpipe ${version}\n` });
        // The .deb's own Node, not the machine's.
        const node = await exec('/usr/lib/bucketpipe/node/bin/node', ['--version']);
        const shipped = (await readFile(join(repoRoot, 'deploy/node-version'), 'utf8')).trim();
        expect(node.stdout.trim()).toBe(`v${shipped}`);

        // systemd-analyze verify exits 0 on some warnings (an unknown setting is "ignoring"): none allowed.
        const verify = await exec('systemd-analyze', ['verify', ...units.map((unit) => unit.replace('@.', '@migration.'))], { cwd: '/' });
        expect(verify, verify.stderr).toMatchObject({ code: 0, stderr: '' });

        const user = await exec('getent', ['passwd', 'bucketpipe']);
        expect(user.stdout).toMatch(/^bucketpipe:x:\d+:\d+:.*:\/nonexistent:\/usr\/sbin\/nologin$/m);
        await exec('sh', ['-c', 'echo BUCKETPIPE_URL=/srv/stream > /etc/bucketpipe/migration.env']);

        ok(await exec('dpkg', ['-r', 'bucketpipe']), 'dpkg -r');
        // Directories such as /usr/bin stay; no file of the package, and nothing of /usr/lib/bucketpipe.
        const leftoverFiles = installed.filter(isFileOrLink);
        expect(leftoverFiles, 'files of the package still on disk after dpkg -r').toEqual([]);
        expect(existsSync('/usr/lib/bucketpipe')).toBe(false);
        expect(existsSync('/etc/bucketpipe/migration.env')).toBe(true);

        ok(await exec('dpkg', ['--purge', 'bucketpipe']), 'dpkg --purge');
        expect(existsSync('/etc/bucketpipe')).toBe(false);
        expect((await exec('getent', ['passwd', 'bucketpipe'])).code).not.toBe(0);
      });
    },
  );
});
