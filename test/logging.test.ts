// The CLI's stderr in both log formats, as processes see it: JSON lines on a pipe (what every other
// test reads), the human lines with --log-format human, the live bar on a pseudo-terminal
// (util-linux script(1)), the size estimate in the manifest, and zfs send -nP asked for a size.
import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bucketpipe, cliPath, fixtures, logEvents, MiB, mixedInputSuite, outputFile, readJson, run, sha256File } from './helpers.js';

const CHUNK = ['--chunk-size', '256KiB', '--manifest-interval', '200ms'];
/** Progress events every 300 ms instead of 10 s (a setting for tests only). */
const fastEvents = { env: { ...process.env, BUCKETPIPE_PROGRESS_INTERVAL: '300ms' } };
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Every stderr line is one JSON object with level, ISO time, msg, command and event; returns them. */
function expectJsonLines(stderr: string, command: string): Array<Record<string, unknown>> {
  const lines = stderr.split('\n').filter((line) => line !== '');
  expect(lines.length, stderr).toBeGreaterThan(0);
  const events = lines.map((line) => {
    let event: Record<string, unknown> = {};
    expect(() => {
      event = JSON.parse(line) as Record<string, unknown>;
    }, line).not.toThrow();
    expect(['info', 'warn', 'error'], line).toContain(event.level);
    expect(event.time, line).toMatch(ISO_TIME);
    expect(typeof event.msg, line).toBe('string');
    expect(event, line).toMatchObject({ command, event: expect.any(String) });
    return event;
  });
  return events;
}

/** Runs `argv` under a pseudo-terminal (util-linux script), so that the CLI's stderr is a TTY; returns what the terminal got. */
function onTerminal(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; screen: string }> {
  const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;
  const child = spawn('script', ['-qfec', argv.map(quote).join(' '), '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let screen = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    screen += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    screen += text;
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, screen }));
  });
}

describe('logs', () => {
  const size = 4.5 * MiB;
  const suite = mixedInputSuite('logging', size, 7);

  /** `send` of the input from a source that gives 1.5 MB/s: about 3 s. */
  const pacedSend = (stream: string, more: string[] = []) => [
    'send',
    stream,
    ...CHUNK,
    ...more,
    '--',
    process.execPath,
    join(fixtures, 'paced-cat.mjs'),
    suite.input,
    '1500000',
  ];

  it('JSON on a pipe: one object per line; with --size, progress events with percent and ETA at the sender and, through the manifest, at the receiver', async () => {
    const stream = join(suite.dir, 'json');
    const estimate = 5_000_000;
    const sender = bucketpipe(pacedSend(stream, ['--size', '5MB']), fastEvents);
    const out = await outputFile(join(suite.dir, 'json.out'));
    const receiver = bucketpipe(['receive', stream, '--poll-interval', '100ms', '--receiver-id', 'dst'], {
      ...fastEvents,
      stdoutFile: out.fd,
    });
    const [sent, received] = await Promise.all([sender.done, receiver.done.finally(() => out.close())]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(join(suite.dir, 'json.out'))).toBe(await sha256File(suite.input));
    expect(await readJson(join(stream, 'manifest.json'))).toMatchObject({ expectedRawBytes: estimate, state: 'complete', rawBytes: size });

    const sendEvents = expectJsonLines(sent.stderr, 'send');
    const progress = sendEvents.filter((e) => e.event === 'progress');
    expect(progress.length, sent.stderr).toBeGreaterThanOrEqual(3);
    for (const event of progress) {
      expect(event).toMatchObject({ level: 'info', expectedRawBytes: estimate, estimate: true, phase: 'sending' });
      expect(event.percent).toBe(Math.min(99, Math.floor(((event.rawBytes as number) / estimate) * 100)));
      expect(event.msg).toMatch(/^send \d+% [\d.]+ \w+ \/ ~4\.77 MiB/);
    }
    const moving = progress.filter((e) => typeof e.etaSeconds === 'number');
    expect(moving.length, sent.stderr).toBeGreaterThan(0);
    // About 1.5 MB/s, so the ETA is about what is left of the estimate at that pace.
    for (const event of moving) {
      expect(event.MBps as number).toBeGreaterThan(0.7);
      expect(event.MBps as number).toBeLessThan(3);
      const left = (estimate - (event.rawBytes as number)) / ((event.MBps as number) * 1e6);
      expect(Math.abs((event.etaSeconds as number) - left)).toBeLessThanOrEqual(1);
    }
    expect(sendEvents.at(-1)).toMatchObject({ event: 'summary', state: 'complete', rawBytes: size, chunks: 18 });
    expect(sendEvents.at(-1)?.msg).toMatch(
      /^send complete: 4\.50 MiB in [\d.]+s \([\d.]+ MB\/s\), 18 chunks, stored .*; digest [0-9a-f]{64}$/,
    );

    const receiveEvents = expectJsonLines(received.stderr, 'receive');
    const receiving = receiveEvents.filter((e) => e.event === 'progress' && e.phase === 'receiving');
    expect(receiving.length, received.stderr).toBeGreaterThanOrEqual(2);
    expect(receiving.some((e) => e.expectedRawBytes === estimate && e.estimate === true && typeof e.percent === 'number')).toBe(true);
    expect(receiveEvents.at(-1)).toMatchObject({ event: 'summary', rawBytes: size });
  });

  it('a stream longer than its --size: 99% and no ETA once beyond it, never 100% before the end', async () => {
    const stream = join(suite.dir, 'beyond');
    const sent = await run(pacedSend(stream, ['--size', '2MiB']), fastEvents);
    expect(sent.code, sent.stderr).toBe(0);
    const progress = logEvents(sent.stderr).filter((e) => e.event === 'progress');
    const beyond = progress.filter((e) => (e.rawBytes as number) > 2 * MiB);
    expect(beyond.length, sent.stderr).toBeGreaterThan(0);
    for (const event of beyond) {
      expect(event).toMatchObject({ percent: 99, expectedRawBytes: 2 * MiB });
      expect(event).not.toHaveProperty('etaSeconds');
      expect(event.msg).toMatch(/99% .* \/ ~2\.00 MiB · .*beyond the estimate/);
    }
    expect(progress.every((e) => (e.percent as number) <= 99)).toBe(true);
  });

  it('errors: one JSON line with code and exitCode (also for a bad --log-format); --log-format human and the environment give the human line', async () => {
    const missing = join(suite.dir, 'no-such-dir', 'stream');
    const json = await run(['send', missing, '--', 'true']);
    expect(json.code).toBe(3);
    const [error, ...more] = expectJsonLines(json.stderr, 'send');
    expect(more).toEqual([]);
    expect(error).toMatchObject({ level: 'error', event: 'error', exitCode: 3, code: expect.stringMatching(/^BP_STORE_/) });
    expect(error?.msg).toMatch(/directory .*no-such-dir does not exist: create it first/);

    const human = await run(['send', missing, '--log-format', 'human', '--', 'true']);
    expect(human.code).toBe(3);
    expect(human.stderr).toBe(`bucketpipe: error: ${String(error?.msg)} [${String(error?.code)}]\n`);
    const byEnv = await run(['send', missing, '--', 'true'], { env: { ...process.env, BUCKETPIPE_LOG_FORMAT: 'human' } });
    expect(byEnv.stderr).toBe(human.stderr);
    const optionWins = await run(['send', missing, '--log-format=json', '--', 'true'], {
      env: { ...process.env, BUCKETPIPE_LOG_FORMAT: 'human' },
    });
    expect(expectJsonLines(optionWins.stderr, 'send')).toHaveLength(1);

    const usage = await run(['receive', missing, '--concurrency', '0']);
    expect(usage.code).toBe(2);
    expect(expectJsonLines(usage.stderr, 'receive')).toEqual([
      expect.objectContaining({
        level: 'error',
        code: 'BP_USAGE',
        exitCode: 2,
        msg: '--concurrency 0: must be a whole number from 1 to 256',
      }),
    ]);
    const badFormat = await run(['verify', missing, '--log-format', 'xml']);
    expect(badFormat.code).toBe(2);
    expect(expectJsonLines(badFormat.stderr, 'verify')).toEqual([
      expect.objectContaining({ code: 'BP_USAGE', msg: '--log-format xml: not a log format; use auto, human or json' }),
    ]);
    const badEnv = await run(['verify', missing], { env: { ...process.env, BUCKETPIPE_LOG_FORMAT: 'yaml' } });
    expect(badEnv.code).toBe(2);
    expect(logEvents(badEnv.stderr)[0]?.msg).toBe('BUCKETPIPE_LOG_FORMAT=yaml: not a log format; use auto, human or json');
    const unknown = await run(['frobnicate', '--log-format', 'human']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^bucketpipe: error: unknown command "frobnicate": use one of send, receive, .* \[BP_USAGE\]\n$/);
  });

  it('--log-format human: the "bucketpipe: …" lines and a one-line summary instead of JSON', async () => {
    const stream = join(suite.dir, 'human');
    const sent = await run(['send', stream, ...CHUNK, '--log-format', 'human', '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(sent.stderr).toMatch(
      /^bucketpipe: send complete: 4\.50 MiB in [\d.]+s \([\d.]+ MB\/s\), 18 chunks, stored [\d.]+ MiB \([\d.]+x\); digest [0-9a-f]{64}\n$/,
    );
    const received = await run(['receive', stream, '--receiver-id', 'h', '-o', join(suite.dir, 'human.out'), '--log-format', 'human']);
    expect(received.code, received.stderr).toBe(0);
    expect(received.stderr).toMatch(/^bucketpipe: receive complete: 4\.50 MiB into .*human\.out in /);
    const again = await run(['receive', stream, '--receiver-id', 'h', '-o', join(suite.dir, 'human.out'), '--log-format', 'human']);
    expect(again.stderr.split('\n').slice(0, 2).join('\n')).toMatch(
      /^bucketpipe: .*human\.out holds 4\.50 MiB already: verifying it against stream .*\nbucketpipe: .*holds the first 18 chunks/,
    );
    expect(again.stderr).not.toMatch(/^\{/m);
  });

  it('on a terminal: a live bar with percent, bytes of the total, MB/s and ETA, cleared before the summary line', async () => {
    const stream = join(suite.dir, 'tty');
    const sent = await onTerminal([process.execPath, cliPath, ...pacedSend(stream, ['--size', '5MB'])]);
    expect(sent.code, sent.screen).toBe(0);
    const frames = sent.screen.split('\r').filter((frame) => frame.startsWith('send ['));
    expect(frames.length, sent.screen).toBeGreaterThanOrEqual(4);
    expect(frames.length, 'redrawn at most 4 times a second (the send takes about 3 s)').toBeLessThanOrEqual(20);
    expect(sent.screen).toMatch(/send \[#+\.*\] \d+% [\d.]+ \w+ \/ ~4\.77 MiB · [\d.]+ MB\/s · ETA \d+s · \d+ chunks stored/);
    expect(sent.screen).toMatch(/\r {20,}\rbucketpipe: send complete: 4\.50 MiB in /);
    expect(sent.screen).not.toMatch(/^\{|\{"level"/m);

    // The receiver knows the exact total once the stream is complete: no "~"; --rate makes it take about 3 s.
    const received = await onTerminal([
      process.execPath,
      cliPath,
      'receive',
      stream,
      '--rate',
      '1.5MB/s',
      '-o',
      join(suite.dir, 'tty.out'),
    ]);
    expect(received.code, received.screen).toBe(0);
    expect(received.screen).toMatch(/receive \[#+\.*\] \d+% [\d.]+ \w+ \/ 4\.50 MiB · [\d.]+ MB\/s · ETA \d+s · chunk \d+\/18/);
  });

  it('a zfs send source is asked for its size with zfs send -nP; a zfs without a dry run is said once, and the send goes on', async () => {
    // Fake zfs commands: the name is what makes bucketpipe ask; "send FILE" gives the file.
    const fake = async (name: string, dryRun: string) => {
      await mkdir(join(suite.dir, name));
      const path = join(suite.dir, name, 'zfs');
      await writeFile(path, `#!/bin/sh\n[ "$1" = send ] || exit 2\nif [ "$2" = -nP ]; then\n${dryRun}\nfi\nexec cat "$2"\n`);
      await chmod(path, 0o755);
      return path;
    };
    const openzfs = await fake('openzfs', `printf 'full\\t%s\\t4718592\\nsize\\t4718592\\n' "$3"; exit 0`);
    const estimated = await run(['send', join(suite.dir, 'zfs-estimated'), ...CHUNK, '--', openzfs, 'send', suite.input]);
    expect(estimated.code, estimated.stderr).toBe(0);
    expect(await readJson(join(suite.dir, 'zfs-estimated', 'manifest.json'))).toMatchObject({ expectedRawBytes: 4718592 });
    expect(logEvents(estimated.stderr).filter((e) => e.event === 'size')).toEqual([
      expect.objectContaining({
        expectedRawBytes: 4718592,
        msg: `"${openzfs} send -nP ${suite.input}" estimates the stream at 4.50 MiB (4718592 bytes)`,
      }),
    ]);

    const zfsFuse = await fake('zfs-fuse', `echo "invalid option 'n'" >&2; exit 2`);
    const unknown = await run(['send', join(suite.dir, 'zfs-unknown'), ...CHUNK, '--', zfsFuse, 'send', suite.input]);
    expect(unknown.code, unknown.stderr).toBe(0);
    expect(await readJson(join(suite.dir, 'zfs-unknown', 'manifest.json'))).not.toHaveProperty('expectedRawBytes');
    expect(logEvents(unknown.stderr).filter((e) => e.event === 'size')).toEqual([
      expect.objectContaining({
        level: 'info',
        msg: expect.stringMatching(/^no size estimate from ".*zfs send -nP .*" \(it exited with code 2: invalid option 'n'\)/),
      }),
    ]);

    // --size wins: no dry run at all.
    const given = await run(['send', join(suite.dir, 'zfs-given'), ...CHUNK, '--size', '1GiB', '--', zfsFuse, 'send', suite.input]);
    expect(given.code, given.stderr).toBe(0);
    expect(logEvents(given.stderr).filter((e) => e.event === 'size')).toEqual([]);
    expect(await readJson(join(suite.dir, 'zfs-given', 'manifest.json'))).toMatchObject({ expectedRawBytes: 1024 ** 3 });
  });

  it('never prints credentials, in either format', async () => {
    const secret = 'not-the-secret-7f3a';
    const env = { ...process.env, AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: secret, AWS_EC2_METADATA_DISABLED: 'true' };
    for (const format of ['json', 'human']) {
      // Port 9 (discard) on loopback: nothing listens; a store error at once, no network.
      const result = await run(['ls', 's3://bucket/prefix', '--s3-endpoint', 'http://127.0.0.1:9', '--log-format', format], { env });
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).not.toContain(secret);
      expect(result.stderr).not.toContain('AKIDEXAMPLE');
    }
  });
});
