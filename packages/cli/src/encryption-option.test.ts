import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { EncryptionKey, ExitCode, streamIdToBytes, UsageError } from '@bucketpipe/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EncryptionKeyOption, encryptionKeyOption, encryptionOptionSpec } from './encryption-option.js';

const STREAM = streamIdToBytes('0f8e2b7a-3c4d-4e5f-8a9b-1c2d3e4f5a6b');
/** A fixed key whose hex has letters (so that case matters) and whose base64 has both + and /. */
const keyBytes = Buffer.from('fb3e7c01d94a22b8ffe0c5a17d3396e42b8c0f5e6a7d19c3b4e2f80d716a5c9e', 'hex');
const expectedCheck = new EncryptionKey(keyBytes).forStream(STREAM).keyCheck;

let dir: string;
let count = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bucketpipe-key-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `content` to a fresh file with `mode` (set with chmod: the umask does not interfere) and returns its path. */
async function keyFile(content: string | Uint8Array, mode = 0o600): Promise<string> {
  const path = join(dir, `key-${++count}`);
  await writeFile(path, content);
  await chmod(path, mode);
  return path;
}

const option = (path: string | undefined) => encryptionKeyOption({ 'encryption-key-file': path });

const checkOf = (result: EncryptionKeyOption) => result.key?.forStream(STREAM).keyCheck;

async function keyFileError(path: string | boolean | undefined, content?: string | Uint8Array): Promise<UsageError> {
  try {
    await encryptionKeyOption({ 'encryption-key-file': path });
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    const usage = error as UsageError;
    expect(usage.code).toBe('BP_KEY_FILE');
    expect(usage.exitCode).toBe(ExitCode.usage);
    expect(usage.message).not.toContain('\n');
    if (typeof path === 'string' && path !== '') expect(usage.message).toContain(path);
    if (content !== undefined) {
      const bytes = Buffer.from(content);
      const text = bytes.toString('latin1').trim();
      // Neither the file's content nor a recognisable piece of it, in any spelling.
      for (const leak of [
        text,
        text.slice(0, 16),
        text.slice(-16),
        bytes.toString('hex').slice(0, 32),
        bytes.toString('base64').slice(0, 24),
      ]) {
        if (leak.length >= 8) expect(usage.message, `leaks ${leak}`).not.toContain(leak);
      }
    }
    return usage;
  }
  throw new Error(`accepted the key file ${String(path)}`);
}

describe('encryptionOptionSpec', () => {
  it('declares --encryption-key-file as a string option', () => {
    expect(encryptionOptionSpec).toEqual({ 'encryption-key-file': { type: 'string' } });
  });
});

describe('encryptionKeyOption', () => {
  it('without the option: no key and no warning', async () => {
    expect(await encryptionKeyOption({})).toEqual({});
    expect(await option(undefined)).toEqual({});
  });

  it('reads the same key from 32 raw bytes, 64 hex digits (lower or upper case, with a newline) and 44 base64 characters', async () => {
    const hex = keyBytes.toString('hex');
    const base64 = keyBytes.toString('base64');
    expect(base64).toHaveLength(44);
    const spellings: Array<string | Uint8Array> = [
      keyBytes,
      hex,
      `${hex}\n`,
      hex.toUpperCase(),
      `${hex.toUpperCase()}\r\n`,
      `  ${hex}  \n`,
      base64,
      `${base64}\n`,
    ];
    for (const content of spellings) {
      const result = await option(await keyFile(content));
      expect(result.key, String(content)).toBeInstanceOf(EncryptionKey);
      expect(checkOf(result), String(content)).toBe(expectedCheck);
      expect(result.warning).toBeUndefined();
    }
  });

  it('strips only ASCII spaces, tabs, CRs and LFs around hex and base64 (SECURITY.md, "Format")', async () => {
    const hex = keyBytes.toString('hex');
    const base64 = keyBytes.toString('base64');
    for (const content of [`\t${base64}\r\n`, ` ${base64} `, `\n\n${hex}\t`, `\r\n${hex.toUpperCase()}\r\n`]) {
      expect(checkOf(await option(await keyFile(content))), JSON.stringify(content)).toBe(expectedCheck);
    }
    const otherWhitespace = [`${hex}\v`, `\f${hex}`, Buffer.concat([Buffer.from(base64), Buffer.of(0xa0)]), `${base64}\u2028`];
    for (const content of otherWhitespace) {
      expect((await keyFileError(await keyFile(content), content)).message, JSON.stringify(content)).toMatch(/not a key/);
    }
  });

  it('reads base64 only in the standard alphabet, padded and canonical: URL-safe, unpadded or with spare bits set is refused', async () => {
    const base64 = keyBytes.toString('base64');
    expect(base64).toMatch(/[+/]/);
    const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.indexOf(base64.charAt(42));
    const spareBitsSet = `${base64.slice(0, 42)}${'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charAt(last | 1)}=`;
    expect(Buffer.from(spareBitsSet, 'base64').equals(keyBytes)).toBe(true); // Node would read it as the same key
    for (const content of [keyBytes.toString('base64url'), `${keyBytes.toString('base64url')}=`, base64.slice(0, 43), spareBitsSet]) {
      expect((await keyFileError(await keyFile(content), content)).message, content).toMatch(/not a key/);
    }
  });

  it('takes 32 raw bytes as they are, even when they begin or end with whitespace bytes', async () => {
    const raw = Buffer.from(keyBytes);
    raw[0] = 0x20;
    raw[31] = 0x0a;
    const result = await option(await keyFile(raw));
    expect(checkOf(result)).toBe(new EncryptionKey(raw).forStream(STREAM).keyCheck);
  });

  it('never shows the key it read', async () => {
    const result = await option(await keyFile(keyBytes.toString('hex')));
    const shown = [JSON.stringify(result), inspect(result, { depth: Infinity, showHidden: true }), String(result.key)].join(' ');
    for (const leak of [keyBytes.toString('hex'), keyBytes.toString('base64'), keyBytes.toString('hex').toUpperCase()]) {
      expect(shown).not.toContain(leak);
    }
  });

  it('an empty option value: BP_KEY_FILE', async () => {
    await keyFileError('');
    await keyFileError(true);
  });

  it('a file that does not exist: BP_KEY_FILE naming it and how to make a key', async () => {
    const path = join(dir, 'no-such-key');
    const error = await keyFileError(path);
    expect(error.message).toMatch(/no such file/);
    expect(error.message).toContain(`openssl rand -hex 32 > ${path}`);
  });

  it('a directory: BP_KEY_FILE', async () => {
    const path = join(dir, 'a-directory');
    await mkdir(path);
    expect((await keyFileError(path)).message).toMatch(/is a directory, not a key file/);
  });

  it('reads a pipe to its end, like <(pass show key) gives it, without a permission warning', async () => {
    const path = join(dir, 'key-pipe');
    execFileSync('mkfifo', ['-m', '0644', path]);
    const [result] = await Promise.all([option(path), writeFile(path, `${keyBytes.toString('hex')}\n`)]);
    expect(checkOf(result)).toBe(expectedCheck);
    expect(result.warning).toBeUndefined();
  });

  it('follows a symlink to a key file', async () => {
    const target = await keyFile(keyBytes.toString('hex'));
    const link = join(dir, 'key-link');
    await symlink(target, link);
    expect(checkOf(await option(link))).toBe(expectedCheck);
  });

  it('anything that is not a key: 31 or 33 raw bytes, 63 or 65 hex digits, other base64, empty, text; never shown', async () => {
    const hex = keyBytes.toString('hex');
    const notKeys: Array<string | Uint8Array> = [
      keyBytes.subarray(0, 31),
      Buffer.concat([keyBytes, Buffer.of(0x42)]),
      hex.slice(0, 63),
      `${hex}a`,
      `${hex}ab`,
      `${hex.slice(0, 62)}zz`,
      keyBytes.subarray(0, 31).toString('base64'),
      Buffer.concat([keyBytes, Buffer.of(1)]).toString('base64'),
      keyBytes.toString('base64url').replace(/=*$/, ''),
      '',
      '\n',
      'correct horse battery staple, a passphrase is not a key\n',
      `${hex.slice(0, 32)} ${hex.slice(32)}`,
    ];
    for (const content of notKeys) {
      const path = await keyFile(content);
      const error = await keyFileError(path, content);
      expect(error.message, String(content)).toMatch(/not a key/);
      expect(error.message).toContain(`holds ${Buffer.from(content).length} bytes`);
    }
  });

  it('a 10 KB file: BP_KEY_FILE naming its size, without its content', async () => {
    const content = 'ab'.repeat(5 * 1024);
    const error = await keyFileError(await keyFile(content), content);
    expect(error.message).toContain('holds 10240 bytes, far more than a key');
  });

  it('a file of 4097 bytes is too large, one of 4096 is read (and is then not a key)', async () => {
    expect((await keyFileError(await keyFile('x'.repeat(4097)))).message).toMatch(/far more than a key/);
    expect((await keyFileError(await keyFile('x'.repeat(4096)))).message).toMatch(/holds 4096 bytes, not a key/);
  });

  it('an all-zero or one-value key, in every spelling: BP_KEY_FILE, not a random key', async () => {
    for (const content of [
      new Uint8Array(32),
      new Uint8Array(32).fill(0xff),
      '00'.repeat(32),
      'AA'.repeat(32),
      Buffer.alloc(32).toString('base64'),
    ]) {
      const error = await keyFileError(await keyFile(content));
      expect(error.message, String(content)).toMatch(/one byte value repeated, not a random key/);
    }
  });

  it('a key file others can read (0644, 0640, 0604): a warning that says chmod 600', async () => {
    for (const mode of [0o644, 0o640, 0o604, 0o666]) {
      const path = await keyFile(keyBytes.toString('hex'), mode);
      const result = await option(path);
      expect(checkOf(result)).toBe(expectedCheck);
      expect(result.warning, mode.toString(8)).toContain(`chmod 600 ${path}`);
      expect(result.warning).toContain(`mode 0${mode.toString(8)}`);
      expect(result.warning).not.toContain(keyBytes.toString('hex'));
    }
  });

  it('a key file only its owner can read (0600, 0400): no warning', async () => {
    for (const mode of [0o600, 0o400]) {
      const result = await option(await keyFile(keyBytes, mode));
      expect(checkOf(result)).toBe(expectedCheck);
      expect(result.warning, mode.toString(8)).toBeUndefined();
    }
  });
});
