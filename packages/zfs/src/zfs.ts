import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { ZfsError } from './errors.js';
import { parseNames, parseSnapshotProperties, SNAPSHOT_PROPERTIES, type Snapshot } from './parse.js';

export interface ZfsOptions {
  /** The zfs command; default: found on PATH, then in /sbin, /usr/sbin, /usr/local/sbin. */
  command?: string;
  /** How long one zfs command may take (default 2 minutes: destroying a big snapshot takes a while). */
  timeoutMs?: number;
}

const SBIN = ['/sbin', '/usr/sbin', '/usr/local/sbin'];
/** Names per `zfs get`: command lines have a limit, and thousands of snapshots exist. */
const NAMES_PER_CALL = 200;

/**
 * The ZFS commands bucketpipe runs, as argv arrays (never a shell), each failure a one-line
 * ZfsError quoting zfs. Works with OpenZFS and with zfs-fuse (pool version 23), which lacks
 * `zfs list -p`, `zfs holds`, the `written` property and resumable receives.
 */
export class Zfs {
  readonly #command: string | undefined;
  readonly #timeoutMs: number;
  #found: Promise<string> | undefined;
  #written: boolean | undefined;
  #resumable: boolean | undefined;

  constructor(options: ZfsOptions = {}) {
    this.#command = options.command;
    this.#timeoutMs = options.timeoutMs ?? 120_000;
  }

  /** The zfs command's path (resolved once). */
  command(): Promise<string> {
    this.#found ??= this.#command ? Promise.resolve(this.#command) : findZfs();
    return this.#found;
  }

  /** Snapshots of exactly this dataset (not its children), oldest first; null when the dataset does not exist. */
  async listSnapshots(dataset: string): Promise<Snapshot[] | null> {
    let names: string[];
    try {
      names = parseNames(await this.#run(['list', '-H', '-o', 'name', '-t', 'snapshot', '-s', 'createtxg', '-d', '1', dataset]));
    } catch (error) {
      if (error instanceof ZfsError && /does not exist/.test(error.message)) return null;
      throw error;
    }
    const snapshots: Snapshot[] = [];
    for (let i = 0; i < names.length; i += NAMES_PER_CALL) {
      const batch = names.slice(i, i + NAMES_PER_CALL);
      const output = await this.#run(['get', '-Hp', '-o', 'name,property,value', SNAPSHOT_PROPERTIES.join(','), ...batch]);
      snapshots.push(...parseSnapshotProperties(output, batch));
    }
    // createtxg orders them; `-s createtxg` did already, but a batch boundary must not reorder.
    return snapshots.sort((a, b) => (a.createtxg < b.createtxg ? -1 : a.createtxg > b.createtxg ? 1 : 0));
  }

  async datasetExists(dataset: string): Promise<boolean> {
    try {
      await this.#run(['list', '-H', '-o', 'name', dataset]);
      return true;
    } catch (error) {
      if (error instanceof ZfsError && /does not exist/.test(error.message)) return false;
      throw error;
    }
  }

  /** Takes dataset@name and returns it as listed; BP_ZFS_SNAPSHOT_EXISTS when there is one of that name. */
  async snapshot(dataset: string, name: string): Promise<Snapshot> {
    const full = `${dataset}@${name}`;
    try {
      await this.#run(['snapshot', full]);
    } catch (error) {
      if (error instanceof ZfsError && /already exists/.test(error.message)) {
        throw new ZfsError('BP_ZFS_SNAPSHOT_EXISTS', `snapshot ${full} exists already`);
      }
      throw error;
    }
    const found = (await this.listSnapshots(dataset))?.find((s) => s.snapshot === name);
    if (!found) throw new ZfsError('BP_ZFS_FAILED', `zfs snapshot ${full} ended without error, but zfs list does not show it`);
    return found;
  }

  /** Puts hold `tag` on each snapshot; a tag already there is fine. */
  async hold(tag: string, snapshots: readonly string[]): Promise<void> {
    for (const snapshot of snapshots) {
      await this.#run(['hold', tag, snapshot]).catch((error: unknown) => {
        if (!(error instanceof ZfsError && /tag already exists/.test(error.message))) throw error;
      });
    }
  }

  /** Takes hold `tag` off each snapshot; a tag that is not there (or a snapshot gone) is fine. */
  async release(tag: string, snapshots: readonly string[]): Promise<void> {
    for (const snapshot of snapshots) {
      await this.#run(['release', tag, snapshot]).catch((error: unknown) => {
        if (!(error instanceof ZfsError && /no such tag|does not exist/.test(error.message))) throw error;
      });
    }
  }

  async destroySnapshot(name: string): Promise<void> {
    if (!name.includes('@')) throw new TypeError(`not a snapshot name: ${name}`);
    await this.#run(['destroy', name]);
  }

  /** Bytes written to the dataset since its newest snapshot (`written`); undefined where the pool cannot tell (zfs-fuse). */
  async writtenSinceNewestSnapshot(dataset: string): Promise<number | undefined> {
    if (this.#written === false) return undefined;
    try {
      const value = (await this.#run(['get', '-Hp', '-o', 'value', 'written', dataset])).trim();
      this.#written = true;
      return /^\d+$/.test(value) ? Number(value) : undefined;
    } catch (error) {
      if (error instanceof ZfsError && /invalid property|bad property/.test(error.message)) {
        this.#written = false;
        return undefined;
      }
      throw error;
    }
  }

  /**
   * Aborts a partial receive state of `zfs recv -s` (`zfs recv -A`) so that a stream can be applied
   * again from its start; returns whether there was one. Where resumable receives do not exist
   * (zfs-fuse), there is none.
   */
  async abortPartialReceive(dataset: string): Promise<boolean> {
    if (this.#resumable === false) return false;
    let token: string;
    try {
      token = (await this.#run(['get', '-H', '-o', 'value', 'receive_resume_token', dataset])).trim();
      this.#resumable = true;
    } catch (error) {
      if (error instanceof ZfsError && /invalid property|bad property/.test(error.message)) {
        this.#resumable = false;
        return false;
      }
      if (error instanceof ZfsError && /does not exist/.test(error.message)) return false;
      throw error;
    }
    if (token === '-' || token === '') return false;
    await this.#run(['recv', '-A', dataset]);
    return true;
  }

  /** argv of `zfs send <flags> [-i from] to`. */
  async sendArgv(flags: readonly string[], to: string, from?: string): Promise<string[]> {
    return [await this.command(), 'send', ...flags, ...(from ? ['-i', from] : []), to];
  }

  /** argv of `zfs recv <flags> dataset`. */
  async recvArgv(flags: readonly string[], dataset: string): Promise<string[]> {
    return [await this.command(), 'recv', ...flags, dataset];
  }

  async #run(args: string[]): Promise<string> {
    const command = await this.command();
    return new Promise((resolve, reject) => {
      execFile(command, args, { timeout: this.#timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        const said = stderr.trim().split('\n').slice(0, 3).join(' ').replace(/\s+/g, ' ') || error.message;
        const how = error.killed ? `timed out after ${this.#timeoutMs / 1000}s` : `failed`;
        reject(new ZfsError('BP_ZFS_FAILED', `zfs ${args.join(' ')} ${how}: ${said}`));
      });
    });
  }
}

async function findZfs(): Promise<string> {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SBIN];
  for (const dir of dirs) {
    const path = join(dir, 'zfs');
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {}
  }
  throw new ZfsError(
    'BP_ZFS_MISSING',
    'there is no zfs command (not on PATH, nor in /sbin or /usr/sbin): install ZFS, or run bucketpipe where it is',
  );
}
