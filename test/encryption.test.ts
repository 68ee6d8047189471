import { createHash, randomBytes } from 'node:crypto';
import { chmod, cp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { errorLine, type Finished, MiB, mixedInputSuite, outputFile, readJson, run, sha256File, summaryOf } from './helpers.js';

const streamBytes = 12 * MiB + 777; // 13 chunks of 1 MiB, the last one short
const sendArgs = ['--chunk-size', '1MiB', '--manifest-interval', '100ms'];
const chunkPath = (stream: string, index: number) => join(stream, 'chunks', String(index).padStart(12, '0'));
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Every file under `dir`, recursively. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/**
 * A chunk altered by someone with write access to the bucket who also recomputes both unkeyed
 * checks: the payload's (SHA-256 in chunk format 1, CRC-32 in 2) and the header's CRC-32.
 */
async function alterChunk(path: string, edit: (object: Buffer) => void): Promise<void> {
  const object = await readFile(path);
  edit(object);
  const payload = object.subarray(128);
  const version = object.readUInt16LE(12);
  if (version === 1) createHash('sha256').update(payload).digest().copy(object, 88);
  else if (version === 2) object.writeUInt32LE(crc32(payload), 88);
  else throw new Error(`${path}: chunk format ${version} is not one this test knows`);
  object.writeUInt32LE(crc32(object.subarray(8, 124)), 124);
  await writeFile(path, object);
}

describe('client-side encryption (--encryption-key-file)', () => {
  const suite = mixedInputSuite('encryption', streamBytes, 21);
  let key: Buffer;
  let keyHexFile: string;
  let keyBase64File: string;
  let otherKeyFile: string;
  let encrypted: string;
  const transcripts: Finished[] = [];
  const cli = async (args: string[], options: Parameters<typeof run>[1] = {}) => {
    const finished = await run(args, options);
    transcripts.push(finished);
    return finished;
  };

  beforeAll(async () => {
    key = randomBytes(32);
    keyHexFile = join(suite.dir, 'key.hex');
    keyBase64File = join(suite.dir, 'key.b64');
    otherKeyFile = join(suite.dir, 'other.key');
    await writeFile(keyHexFile, `${key.toString('hex')}\n`, { mode: 0o600 });
    await writeFile(keyBase64File, key.toString('base64'), { mode: 0o600 });
    await writeFile(otherKeyFile, randomBytes(32), { mode: 0o600 });
    encrypted = join(suite.dir, 'encrypted');
    const sent = await cli(['send', encrypted, ...sendArgs, '--encryption-key-file', keyHexFile, '--', 'cat', suite.input]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(summaryOf(sent.stderr)).toMatchObject({ chunks: 13, rawBytes: streamBytes, encrypted: true });
  });

  it('a receiver with the key (in another encoding) gets identical bytes; verify authenticates every chunk', async () => {
    const out = join(suite.dir, 'received.bin');
    const received = await cli(['receive', encrypted, '-o', out, '--encryption-key-file', keyBase64File]);
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(out)).toBe(suite.sha256);
    expect(summaryOf(received.stderr)).toMatchObject({ encrypted: true, digest: summaryOf(transcripts[0]?.stderr ?? '').digest });

    const verified = await cli(['verify', encrypted, '-q', '--encryption-key-file', keyHexFile]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/^OK: 13 chunks, .* complete, encrypted: every chunk authenticated\)\n$/);
  });

  it('the store holds neither the key nor anything zstd can read; the manifest says how it is encrypted', async () => {
    const manifest = await readJson(join(encrypted, 'manifest.json'));
    expect(manifest.encryption).toEqual({
      algorithm: 'aes-256-gcm',
      kdf: 'hkdf-sha256',
      keyCheck: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const secrets = [key, Buffer.from(key.toString('hex')), Buffer.from(key.toString('base64'))];
    const files = await filesUnder(encrypted);
    expect(files.length).toBeGreaterThanOrEqual(14); // the manifest, 13 chunks and the receivers' cursors
    for (const file of files) {
      const bytes = await readFile(file);
      for (const secret of secrets) expect(bytes.includes(secret), `${file} holds the key`).toBe(false);
    }
    for (let index = 0; index < 13; index++) {
      const object = await readFile(chunkPath(encrypted, index));
      expect(object[15], 'the encrypted flag').toBe(0x01);
      // The payload is nonce ‖ ciphertext ‖ tag: no zstd frame anywhere near where a plain chunk has one.
      expect(object.subarray(128, 128 + 16).includes(ZSTD_MAGIC)).toBe(false);
    }
  });

  it('without the key, or with another, nothing is written: one error line naming the fix', async () => {
    const stdoutPath = join(suite.dir, 'no-key.out');
    const stdout = await outputFile(stdoutPath);
    const noKey = await cli(['receive', encrypted, '-q'], { stdoutFile: stdout.fd });
    await stdout.close();
    expect(noKey.code, noKey.stderr).toBe(2);
    expect(errorLine(noKey.stderr)).toMatch(
      /stream .*encrypted is encrypted \(aes-256-gcm\): give the key it was sent with, --encryption-key-file FILE \[BP_KEY_MISSING\]$/,
    );
    expect((await stat(stdoutPath)).size).toBe(0);

    const wrongOut = join(suite.dir, 'wrong-key.bin');
    const wrong = await cli(['receive', encrypted, '-o', wrongOut, '--encryption-key-file', otherKeyFile]);
    expect(wrong.code, wrong.stderr).toBe(2);
    expect(errorLine(wrong.stderr)).toMatch(
      /the key in --encryption-key-file is not the key stream .* was encrypted with .*\[BP_KEY_WRONG\]$/,
    );
    expect((await stat(wrongOut).catch(() => ({ size: 0 }))).size).toBe(0);

    const verifyNoKey = await cli(['verify', encrypted, '-q']);
    expect(verifyNoKey.code).toBe(2);
    expect(errorLine(verifyNoKey.stderr)).toMatch(/\[BP_KEY_MISSING\]$/);
    const verifyWrong = await cli(['verify', encrypted, '-q', '--encryption-key-file', otherKeyFile]);
    expect(verifyWrong.code).toBe(2);
    expect(errorLine(verifyWrong.stderr)).toMatch(/\[BP_KEY_WRONG\]$/);
  });

  it('a key is refused for a plain stream, so a stream swapped for a plaintext one cannot pass', async () => {
    const plain = join(suite.dir, 'plain');
    expect((await cli(['send', plain, ...sendArgs, '--', 'cat', suite.input])).code).toBe(0);
    const out = join(suite.dir, 'plain.bin');
    const refused = await cli(['receive', plain, '-o', out, '--encryption-key-file', keyHexFile]);
    expect(refused.code, refused.stderr).toBe(4);
    expect(errorLine(refused.stderr)).toMatch(/stream .*plain is not encrypted, but an encryption key was given.*\[BP_NOT_ENCRYPTED\]$/);
    expect((await stat(out).catch(() => ({ size: 0 }))).size).toBe(0);
  });

  it('a tampered chunk is refused before any of its bytes reach the sink, and verify names it', async () => {
    const tampered = join(suite.dir, 'tampered');
    await cp(encrypted, tampered, { recursive: true });
    await alterChunk(chunkPath(tampered, 0), (object) => {
      object[object.length - 100] = (object[object.length - 100] as number) ^ 0x01; // a ciphertext byte
    });
    // A header field under the authentication (the raw digest) changed: without it, the raw digest check would catch this.
    await alterChunk(chunkPath(tampered, 7), (object) => {
      object[8 + 48] = (object[8 + 48] as number) ^ 0x01;
    });
    const stdoutPath = join(suite.dir, 'tampered.out');
    const stdout = await outputFile(stdoutPath);
    const received = await cli(['receive', tampered, '-q', '--encryption-key-file', keyHexFile], { stdoutFile: stdout.fd });
    await stdout.close();
    expect(received.code, received.stderr).toBe(5);
    expect(errorLine(received.stderr)).toMatch(
      /chunk chunks\/000000000000 failed AES-GCM authentication: it was altered in the store .*; nothing of it was written to the sink \[BP_CHUNK_AUTH\]$/,
    );
    expect((await stat(stdoutPath)).size).toBe(0);

    const verified = await cli(['verify', tampered, '-q', '--encryption-key-file', keyHexFile]);
    expect(verified.code, verified.stderr).toBe(5);
    const lines = verified.stdout.trim().split('\n');
    expect(lines.slice(0, -1)).toEqual([
      expect.stringMatching(/^chunk chunks\/000000000000 failed AES-GCM authentication.*\[BP_CHUNK_AUTH\]$/),
      expect.stringMatching(/^chunk chunks\/000000000007 failed AES-GCM authentication.*\[BP_CHUNK_AUTH\]$/),
    ]);
  });

  it('a stream cut short by editing its manifest fails the keyed stream digest', async () => {
    const cut = join(suite.dir, 'cut');
    await cp(encrypted, cut, { recursive: true });
    // What an attacker can compute without the key: the plain digest over the headers' raw digests.
    const digests = await Promise.all(Array.from({ length: 12 }, async (_, i) => (await readFile(chunkPath(cut, i))).subarray(56, 88)));
    const manifest = await readJson(join(cut, 'manifest.json'));
    const final = { chunks: 12, rawBytes: 12 * MiB, digest: createHash('sha256').update(Buffer.concat(digests)).digest('hex') };
    await writeFile(join(cut, 'manifest.json'), JSON.stringify({ ...manifest, watermark: 12, rawBytes: 12 * MiB, final }));
    const received = await cli(['receive', cut, '-q', '--encryption-key-file', keyHexFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    expect(received.code, received.stderr).not.toBe(0);
    expect(errorLine(received.stderr)).toMatch(/does not match its manifest .*the sink was stopped before end-of-input/);
  });

  it('send --takeover continues an encrypted stream only with its key', async () => {
    const stream = join(suite.dir, 'takeover');
    const failing = await cli([
      'send',
      stream,
      ...sendArgs,
      '--encryption-key-file',
      keyHexFile,
      '--',
      'sh',
      '-c',
      `head -c 5242880 "${suite.input}"; sleep 1; exit 3`,
    ]);
    expect(failing.code, failing.stderr).toBe(6);
    const before = await readFile(join(stream, 'manifest.json'));
    expect(JSON.parse(before.toString()).state).toBe('aborted');

    const noKey = await cli(['send', stream, ...sendArgs, '--takeover', '--', 'cat', suite.input]);
    expect(noKey.code, noKey.stderr).toBe(2);
    expect(errorLine(noKey.stderr)).toMatch(/\[BP_KEY_MISSING\]$/);
    const wrongKey = await cli([
      'send',
      stream,
      ...sendArgs,
      '--takeover',
      '--encryption-key-file',
      otherKeyFile,
      '--',
      'cat',
      suite.input,
    ]);
    expect(wrongKey.code, wrongKey.stderr).toBe(2);
    expect(errorLine(wrongKey.stderr)).toMatch(/\[BP_KEY_WRONG\]$/);
    expect(await readFile(join(stream, 'manifest.json'))).toEqual(before);

    const resumed = await cli(['send', stream, ...sendArgs, '--takeover', '--encryption-key-file', keyHexFile, '--', 'cat', suite.input]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const resumedSummary = summaryOf(resumed.stderr);
    expect(resumedSummary).toMatchObject({ chunks: 13, resumedFrom: 5, encrypted: true });
    // Chunks the dead sender stored beyond the watermark are kept when they match (their header's HMAC).
    expect((resumedSummary.chunksUploaded as number) + (resumedSummary.chunksReused as number)).toBe(8);
    const out = join(suite.dir, 'takeover.bin');
    const received = await cli(['receive', stream, '-o', out, '--encryption-key-file', keyHexFile]);
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(out)).toBe(suite.sha256);
  });

  it('a relay copies an encrypted stream without the key; the copy receives with it', async () => {
    const copy = join(suite.dir, 'relayed');
    const relayed = await cli(['relay', encrypted, copy]);
    expect(relayed.code, relayed.stderr).toBe(0);
    const out = join(suite.dir, 'relayed.bin');
    const received = await cli(['receive', copy, '-o', out, '--encryption-key-file', keyHexFile]);
    expect(received.code, received.stderr).toBe(0);
    expect(await sha256File(out)).toBe(suite.sha256);
  });

  it('a key file others can read gets a warning; key material never appears in any output', async () => {
    const loose = join(suite.dir, 'loose.key');
    await writeFile(loose, key.toString('hex'));
    await chmod(loose, 0o644);
    const verified = await cli(['verify', encrypted, '-q', '--encryption-key-file', loose]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stderr).toContain(`the key file ${loose} can be read by other users (mode 0644): chmod 600 ${loose}`);

    const secrets = [key.toString('hex'), key.toString('base64'), key.toString('latin1')];
    for (const { stdout, stderr } of transcripts) {
      for (const secret of secrets) expect(`${stdout}${stderr}`.includes(secret)).toBe(false);
    }
    expect(transcripts.length).toBeGreaterThan(15);
  });
});
