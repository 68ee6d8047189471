import { open } from 'node:fs/promises';
import { ENCRYPTION_KEY_LENGTH, EncryptionKey, UsageError } from '@bucketpipe/core';
import type { OptionSpec, ParsedCommandLine } from './args.js';

export const encryptionOptionSpec: OptionSpec = { 'encryption-key-file': { type: 'string' } };

export const encryptionOptionHelp = `  --encryption-key-file FILE
                        encrypt (send) or decrypt and authenticate (receive, verify) every chunk with
                        AES-256-GCM under the 32-byte key in FILE (raw, 64 hex digits or base64; a
                        pipe works too: <(pass show bp-key); make one with: openssl rand -hex 32 >
                        FILE; chmod 600 FILE). The key is never
                        stored or printed; without it an encrypted stream cannot be read by anyone,
                        bucketpipe included. See docs/SECURITY.md`;

export interface EncryptionKeyOption {
  key?: EncryptionKey;
  /** Something the operator should fix, but that does not stop the command (a key file others can read). */
  warning?: string;
}

/** A key file is tiny; anything larger is not one, and is not read into memory. */
const MAX_KEY_FILE_BYTES = 4096;

/**
 * Reads `--encryption-key-file`: 32 raw bytes, or the same as 64 hex digits or 44 base64
 * characters (see parseKey). Errors name the file and its size, never its bytes.
 */
export async function encryptionKeyOption(values: ParsedCommandLine['values']): Promise<EncryptionKeyOption> {
  const path = values['encryption-key-file'];
  if (path === undefined) return {};
  if (typeof path !== 'string' || path === '') throw keyFileError('--encryption-key-file needs a file name');
  const { bytes, mode } = await readKeyFile(path);
  const key = parseKey(bytes, path);
  const warning =
    mode !== undefined && (mode & 0o077) !== 0
      ? `the key file ${path} can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}): chmod 600 ${path}`
      : undefined;
  return { key, warning };
}

async function readKeyFile(path: string): Promise<{ bytes: Buffer; mode: number | undefined }> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw keyFileError(
        `--encryption-key-file ${path}: no such file; to make a new key: openssl rand -hex 32 > ${path}; chmod 600 ${path} (a stream already sent needs the key it was sent with)`,
      );
    }
    if (code === 'EACCES') throw keyFileError(`--encryption-key-file ${path}: permission denied; run as the key file's owner`);
    if (code === 'EISDIR') throw keyFileError(`--encryption-key-file ${path}: is a directory, not a key file`);
    throw keyFileError(`--encryption-key-file ${path}: cannot be opened (${code ?? (error as Error).message})`);
  }
  try {
    const stat = await handle.stat();
    if (stat.isDirectory()) throw keyFileError(`--encryption-key-file ${path}: is a directory, not a key file`);
    if (stat.isFile() && stat.size > MAX_KEY_FILE_BYTES) {
      throw keyFileError(`--encryption-key-file ${path} holds ${stat.size} bytes, far more than a key: is it the right file?`);
    }
    // A pipe (`<(pass show bucketpipe)`, a secret manager's FIFO) is read to its end like a file.
    const buffer = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_KEY_FILE_BYTES) {
      buffer.fill(0);
      throw keyFileError(
        `--encryption-key-file ${path} holds more than ${MAX_KEY_FILE_BYTES} bytes, far more than a key: is it the right file?`,
      );
    }
    return { bytes: buffer.subarray(0, length), mode: stat.isFile() ? stat.mode : undefined };
  } finally {
    await handle.close();
  }
}

/**
 * The key in a key file (docs/SECURITY.md, "Format"): a file of exactly 32 bytes is the raw key,
 * whatever its bytes; otherwise, after stripping ASCII spaces, tabs, CRs and LFs from both ends,
 * 64 hex digits (either case) or 44 characters of standard, padded, canonical base64 (RFC 4648 §4:
 * `+` and `/`, one `=`, unused bits zero). Anything else — URL-safe or unpadded base64, other
 * whitespace, whitespace inside — is refused rather than guessed at.
 */
function parseKey(bytes: Buffer, path: string): EncryptionKey {
  const text = bytes.toString('latin1').replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '');
  let key: Buffer | undefined;
  if (bytes.length === ENCRYPTION_KEY_LENGTH) key = Buffer.from(bytes);
  else if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=$/.test(text) && canonicalBase64End(text)) key = Buffer.from(text, 'base64');
  try {
    if (!key || key.length !== ENCRYPTION_KEY_LENGTH) {
      throw keyFileError(
        `--encryption-key-file ${path} holds ${bytes.length} bytes, not a key: a key file holds ${ENCRYPTION_KEY_LENGTH} random bytes, raw or as 64 hex digits or 44 base64 characters (openssl rand -hex 32 > ${path})`,
      );
    }
    const first = key[0];
    if (key.every((byte) => byte === first)) {
      throw keyFileError(
        `--encryption-key-file ${path} holds one byte value repeated, not a random key: make one with openssl rand -hex 32`,
      );
    }
    return new EncryptionKey(key);
  } finally {
    // The key lives on only inside EncryptionKey: wipe the copies read and decoded here.
    key?.fill(0);
    bytes.fill(0);
  }
}

const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** 32 bytes fill 42 characters and 4 bits of the 43rd; in the one canonical spelling its last 2 bits are 0. */
function canonicalBase64End(text: string): boolean {
  return (BASE64_ALPHABET.indexOf(text.charAt(42)) & 0b11) === 0;
}

function keyFileError(message: string): UsageError {
  return new UsageError(message, 'BP_KEY_FILE');
}
