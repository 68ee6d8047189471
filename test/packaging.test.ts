// The release route, end to end: `npm pack` of every publishable workspace package, then one
// `npm install -g` of those tarballs into an empty prefix with the machine's npm — exactly the
// commands docs/OPERATIONS.md gives — and a real send and receive with the installed binary.
//
// Network: the third-party dependencies (AWS SDK, Google Cloud Storage client, zstd-napi, …) come
// from the npm registry (or npm's cache). The @bucketpipe packages must come from the tarballs:
// asserted from npm's own http log. zstd-napi compiles from source (npm_config_build_from_source:
// its prebuild-install step would otherwise try a download from GitHub first), against the Node
// headers npm's `nodedir` names on this machine. One install, about 30–70 s.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { logText, MiB, outputFile, repoRoot, sha256File, summaryOf, tempDir, writeMixedStream } from './helpers.js';
import { exec, type Result, userEnv } from './user-shell.js';

/** The packages a user installs, in dependency order; store-testkit is private and test-only. */
const publishable = [
  '@bucketpipe/core',
  '@bucketpipe/store-fs',
  '@bucketpipe/store-s3',
  '@bucketpipe/store-gcs',
  '@bucketpipe/replication',
  '@bucketpipe/zfs',
  'bucketpipe',
];
const workspaceDir: Record<string, string> = {
  '@bucketpipe/core': 'packages/core',
  '@bucketpipe/store-fs': 'packages/store-fs',
  '@bucketpipe/store-s3': 'packages/store-s3',
  '@bucketpipe/store-gcs': 'packages/store-gcs',
  '@bucketpipe/replication': 'packages/replication',
  '@bucketpipe/zfs': 'packages/zfs',
  bucketpipe: 'packages/cli',
};
/** Must not reach an installed tree: build and test tooling, the test kit. */
const devOnly = ['typescript', 'vitest', '@biomejs/biome', 'turbo', 'eslint', 'typescript-eslint', '@bucketpipe/store-testkit'];

interface Packed {
  name: string;
  version: string;
  filename: string;
  size: number;
  files: { path: string }[];
}

/** Every directory named node_modules/<name> below `root`, at any depth. */
async function installedCopies(root: string, name: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (nodeModules: string): Promise<void> => {
    let entries: string[];
    try {
      entries = await readdir(nodeModules);
    } catch {
      return;
    }
    for (const entry of entries) {
      const packages = entry.startsWith('@') ? (await readdir(join(nodeModules, entry))).map((n) => `${entry}/${n}`) : [entry];
      for (const pkg of packages) {
        if (pkg === name) found.push(join(nodeModules, pkg));
        await walk(join(nodeModules, pkg, 'node_modules'));
      }
    }
  };
  await walk(root);
  return found;
}

describe('packaging: the packed tarballs install into an empty prefix and run a transfer', () => {
  let work: { path: string; cleanup: () => Promise<void> };
  let packed: Packed[];
  let install: Result;
  let prefix: string;
  let bin: string;
  let cwd: string;

  beforeAll(async () => {
    work = await tempDir('packaging');
    const tarballs = join(work.path, 'tarballs');
    prefix = join(work.path, 'prefix');
    cwd = join(work.path, 'cwd');
    for (const dir of [tarballs, prefix, cwd]) await mkdir(dir, { recursive: true });

    // 1. What a maintainer runs after `npx turbo run build` in the repository.
    const pack = await exec(
      'npm',
      ['pack', ...publishable.flatMap((name) => ['-w', name]), '--pack-destination', tarballs, '--json', '--loglevel', 'warn'],
      { cwd: repoRoot, env: userEnv() },
    );
    if (pack.code !== 0) throw new Error(`npm pack failed (${pack.code}):\n${pack.stderr}`);
    packed = JSON.parse(pack.stdout) as Packed[];

    // 2. What a user runs, in an empty directory outside any project, with the tarballs copied
    //    there: `npm install -g --allow-scripts=zstd-napi ./bucketpipe-*.tgz` (the shell sorts the glob).
    const files = readdirSync(tarballs)
      .filter((f) => /^bucketpipe-.*\.tgz$/.test(f))
      .sort();
    install = await exec(
      'npm',
      [
        'install',
        '-g',
        '--prefix',
        prefix,
        '--allow-scripts=zstd-napi',
        '--no-audit',
        '--no-fund',
        '--loglevel',
        'http',
        ...files.map((f) => join(tarballs, f)),
      ],
      { cwd, env: userEnv({ npm_config_build_from_source: 'true', npm_config_update_notifier: 'false' }) },
    );
    console.log(`packaging: npm install -g of ${files.length} tarballs took ${install.seconds.toFixed(1)} s`);
    if (install.code !== 0) throw new Error(`npm install -g failed (${install.code}):\n${install.stderr.slice(-6000)}`);
    bin = join(prefix, 'bin', 'bucketpipe');
  }, 420_000);

  afterAll(async () => {
    await work?.cleanup();
  });

  test('every publishable package packs its built code and nothing else', () => {
    expect(packed.map((p) => p.name)).toEqual(publishable);
    for (const p of packed) {
      const dir = join(repoRoot, workspaceDir[p.name] ?? '');
      const own = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
      expect(p.version).toBe(own.version);
      for (const { path } of p.files) {
        if (path === 'package.json' || path === 'README.md' || path === 'LICENSE') continue;
        if (p.name === 'bucketpipe' && path === 'bin/bucketpipe.js') continue; // the bin shim, checked below
        // Only compiled code and its types; no tests, test kits, source maps (their sources are
        // not shipped) or the tsc build-info.
        expect(path, `${p.name}: ${path}`).toMatch(/^dist\/[\w/-]+\.(js|d\.ts)$/);
        expect(path, `${p.name}: ${path}`).not.toMatch(/test|testkit|test-kit/);
        // Stale output of a deleted or renamed source file would ship too: dist/ must mirror src/.
        const source = join(dir, path.replace(/^dist\//, 'src/').replace(/(\.d)?\.js$|\.d\.ts$/, '.ts'));
        expect(
          existsSync(source),
          `${p.name}: ${path} has no source ${source} (stale build output: rm -rf ${workspaceDir[p.name]}/dist and rebuild)`,
        ).toBe(true);
      }
    }
    const cli = packed.find((p) => p.name === 'bucketpipe');
    expect(cli?.files.map((f) => f.path)).toEqual(expect.arrayContaining(['bin/bucketpipe.js', 'dist/bin.js']));
    expect(readFileSync(join(repoRoot, 'packages/cli/bin/bucketpipe.js'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    // The CLI ships no type declarations: nothing imports it.
    expect(cli?.files.some((f) => f.path.endsWith('.d.ts'))).toBe(false);
    console.log(
      `packaging: tarballs ${packed.map((p) => `${p.filename} ${(p.size / 1024).toFixed(1)} KiB (${p.files.length} files)`).join(', ')}`,
    );
  });

  test('every package.json declares engines, and the CLI its bin', () => {
    const root = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } };
    for (const name of publishable) {
      const manifest = JSON.parse(readFileSync(join(repoRoot, workspaceDir[name] ?? '', 'package.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      expect(manifest.engines, name).toEqual({ node: root.engines.node });
      expect(manifest.private, name).toBeUndefined();
    }
    const cli = JSON.parse(readFileSync(join(repoRoot, 'packages/cli/package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(cli.bin).toEqual({ bucketpipe: './bin/bucketpipe.js' });
  });

  test('npm takes the @bucketpipe packages from the tarballs, not the registry, and installs no dev tooling', async () => {
    // npm's http log names every registry request ("fetch GET 200 https://registry…/<name>").
    const registryRequests = install.stderr.split('\n').filter((line) => /\bfetch\b/.test(line));
    expect(registryRequests.length).toBeGreaterThan(0); // the log level works: third-party packages were requested
    expect(registryRequests.filter((line) => /\/(@bucketpipe%2f|@bucketpipe\/|bucketpipe(\s|$|\/))/i.test(line))).toEqual([]);
    const lib = join(prefix, 'lib', 'node_modules');
    // The seven packages sit side by side under the prefix, one copy each: the CLI's
    // dependencies on @bucketpipe/*@0.1.0 were satisfied by the tarballs given on the command line.
    for (const name of publishable) expect(await installedCopies(lib, name), name).toEqual([join(lib, name)]);
    for (const name of devOnly) expect(await installedCopies(lib, name), name).toEqual([]);
    // The zstd binding was compiled by its install script (allowed with --allow-scripts).
    const zstd = await installedCopies(lib, 'zstd-napi');
    expect(zstd).toHaveLength(1);
    expect(existsSync(join(zstd[0] ?? '', 'build', 'Release', 'binding.node'))).toBe(true);
    const installedCli = JSON.parse(await readFile(join(lib, 'bucketpipe', 'package.json'), 'utf8')) as { devDependencies?: unknown };
    expect(installedCli.devDependencies).toBeUndefined();
  });

  test('the installed bucketpipe prints its version and help', async () => {
    const { version } = JSON.parse(readFileSync(join(repoRoot, 'packages/cli/package.json'), 'utf8')) as { version: string };
    const v = await exec(bin, ['--version'], { cwd, env: userEnv() });
    expect(v).toMatchObject({ code: 0, stdout: `bucketpipe ${version}\n` });
    const help = await exec(bin, ['--help'], { cwd, env: userEnv() });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: bucketpipe <command>/);
    for (const command of ['send', 'receive', 'relay', 'inspect', 'verify', 'ls', 'rm']) {
      const sub = await exec(bin, [command, '--help'], { cwd, env: userEnv() });
      expect(sub.code, command).toBe(0);
      expect(sub.stdout, command).toMatch(new RegExp(`^usage: bucketpipe ${command} `));
    }
  });

  test('the installed bucketpipe sends and receives through a directory, live, byte for byte', async () => {
    const input = join(work.path, 'input.bin');
    const output = join(work.path, 'output.bin');
    const stream = join(work.path, 'stream');
    const expected = await writeMixedStream(input, 6 * MiB + 12345, 7);
    const out = await outputFile(output);
    try {
      // The receiver starts first and follows the stream as the sender writes it.
      const receiver = exec(bin, ['receive', stream, '--poll-interval', '250ms'], { cwd, env: userEnv(), stdoutFd: out.fd });
      const sender = await exec(bin, ['send', stream, '--chunk-size', '1MiB', '--manifest-interval', '250ms', '--', 'cat', input], {
        cwd,
        env: userEnv(),
      });
      expect(sender.code, sender.stderr).toBe(0);
      const received = await receiver;
      expect(received.code, received.stderr).toBe(0);
      expect(summaryOf(received.stderr)).toMatchObject({ rawBytes: 6 * MiB + 12345, chunks: 7 });
    } finally {
      await out.close();
    }
    expect(await sha256File(output)).toBe(expected);
    const verify = await exec(bin, ['verify', stream], { cwd, env: userEnv() });
    expect(verify.code, verify.stderr).toBe(0);
  });

  test('the installed S3 and GCS stores load (a refused loopback endpoint is a store error, not a missing module)', async () => {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once; no network.
    for (const args of [
      ['ls', 's3://bucket/prefix', '--s3-endpoint', 'http://127.0.0.1:9'],
      ['ls', 'gs://bucket/prefix', '--gcs-endpoint', 'http://127.0.0.1:9'],
    ]) {
      const result = await exec(bin, args, {
        cwd,
        env: userEnv({ AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_EC2_METADATA_DISABLED: 'true' }),
      });
      expect(logText(result.stderr), args.join(' ')).toMatch(/^bucketpipe: error: .*\[BP_\w+\]$/m);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(3);
    }
  });
});
