import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, open, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// A throwaway ZFS for end-to-end tests: Debian's zfs-fuse daemon (pool version 23) and pools on
// sparse files in a temp dir. zfs-fuse is one daemon per machine (its socket is
// /var/run/zfs/zfs_socket), so when one is already running it is used and left running; otherwise
// it is started here and stopped by its pid file in stop(). Pools are made with cachefile=none so
// that a run killed before stop() leaves nothing for the next daemon start to import.

const sbinDirs = ['/sbin', '/usr/sbin', '/usr/local/sbin'];

export const NOT_INSTALLED =
  'zfs-fuse is not installed (no zfs-fuse, zpool or zfs command): run .ci/run, or `apt-get install zfs-fuse` as root';

export interface Pool {
  name: string;
  /** Where the pool's root dataset is mounted (`zpool create -m`); a dataset `name/ds` mounts at `mountpoint/ds`. */
  mountpoint: string;
  /** The sparse file holding the pool. */
  file: string;
}

export interface ZfsTestEnv {
  /** Absolute paths of the commands, for building command lines. */
  zfsPath: string;
  zpoolPath: string;
  /** The temp dir holding the pool files, mount points and the pid file. */
  dir: string;
  /** True when this env started the daemon (and stop() stops it). */
  ownsDaemon: boolean;
  /** Creates a pool on a new sparse file of `bytes` (default 512 MiB). Names get a per-run suffix. */
  createPool(label: string, bytes?: number): Promise<Pool>;
  zfs(...args: string[]): Promise<string>;
  zpool(...args: string[]): Promise<string>;
  /** Names from `zfs list -t all` (datasets, snapshots) under `root`, itself included. */
  list(root: string): Promise<string[]>;
  /**
   * The daemon's open sockets and pipes: each request in flight adds its client's connection, and a
   * receive also the stream it reads. Taken while nothing runs, it is the baseline for waitUntilIdle.
   */
  requestDescriptors(): Promise<number>;
  /**
   * Waits until the daemon holds no more sockets and pipes than `idle`: every request has ended,
   * including a failed receive whose client is gone. zfs-fuse finishes such a receive in the daemon,
   * destroying the dataset it created; a `zfs list` at that moment holds the dataset and the destroy
   * fails (EBUSY), leaving an empty dataset. Wait for this before listing what a failure left.
   */
  waitUntilIdle(idle: number, timeoutMs?: number): Promise<void>;
  /** Destroys the pools, stops the daemon if this env started it, removes the temp dir. Never throws. */
  stop(): Promise<void>;
}

async function findCommand(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...sbinDirs];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}

function exec(file: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) {
        const how = error.killed ? `timed out after ${timeoutMs} ms` : `failed (${error.code ?? error.signal})`;
        reject(new Error(`${file} ${args.join(' ')} ${how}: ${stderr.trim() || stdout.trim()}`));
      } else resolve(stdout);
    });
  });
}

/** A process that is gone or a zombie no one has reaped yet (the daemon's parent may be a reaper that is slow). */
async function isGone(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return /^\d+ \(.*\) Z/.test(stat);
  } catch {
    return true;
  }
}

/** The running zfs-fuse daemon's pid (for a daemon this env did not start). */
async function findDaemonPid(): Promise<number> {
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const comm = await readFile(`/proc/${name}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'zfs-fuse') return Number(name);
  }
  throw new Error('no zfs-fuse process found');
}

async function requestDescriptorsOf(pid: number): Promise<number> {
  const fds = await readdir(`/proc/${pid}/fd`);
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
  return targets.filter((target) => target.startsWith('socket:') || target.startsWith('pipe:')).length;
}

async function daemonAnswers(zpool: string): Promise<boolean> {
  try {
    await exec(zpool, ['list', '-H'], 10_000);
    return true;
  } catch {
    return false;
  }
}

/** Unmounts (lazily) whatever is still mounted under `dir`, deepest first: a dead daemon leaves stale FUSE mounts. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((point): point is string => point !== undefined && (point === dir || point.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) {
    await exec('umount', ['-l', point], 10_000).catch(() => {});
  }
}

export async function startZfs(label = 'zfs'): Promise<ZfsTestEnv> {
  const [daemonPath, zpoolPath, zfsPath] = await Promise.all([findCommand('zfs-fuse'), findCommand('zpool'), findCommand('zfs')]);
  if (!daemonPath || !zpoolPath || !zfsPath) throw new Error(NOT_INSTALLED);
  if (process.getuid?.() !== 0)
    throw new Error('the zfs-fuse tests must run as root (zfs-fuse mounts FUSE file systems and owns /var/run/zfs)');
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    throw new Error('the zfs-fuse tests need /dev/fuse (load the fuse module, or give the container the device)');
  }

  const dir = await mkdtemp(join(tmpdir(), `bucketpipe-${label}-`));
  const pidFile = join(dir, 'zfs-fuse.pid');
  const zfs = (...args: string[]) => exec(zfsPath, args);
  const zpool = (...args: string[]) => exec(zpoolPath, args);
  const pools: Pool[] = [];
  const suffix = `${process.pid}-${Date.now().toString(36)}`;

  let ownsDaemon = false;
  let daemonPid: number | undefined;
  if (!(await daemonAnswers(zpoolPath))) {
    // Daemonizes once its socket is ready; the pid file is written by the daemon itself. It exits 1
    // without a word while another zfs-fuse holds /var/lock/zfs/zfs_lock: one that is still shutting
    // down (that takes seconds after its socket is gone), so try again for a while.
    const startBy = Date.now() + 20_000;
    for (;;) {
      try {
        await exec(daemonPath, ['--pidfile', pidFile, '--no-kstat-mount'], 30_000);
        break;
      } catch (error) {
        if (Date.now() > startBy) {
          await rm(dir, { recursive: true, force: true });
          throw new Error(
            `cannot start zfs-fuse: ${(error as Error).message} (another zfs-fuse may hold /var/lock/zfs/zfs_lock; see \`pgrep -a zfs-fuse\`)`,
          );
        }
        await sleep(250);
      }
    }
    ownsDaemon = true;
    const deadline = Date.now() + 15_000;
    while (!(await daemonAnswers(zpoolPath))) {
      if (Date.now() > deadline) {
        await rm(dir, { recursive: true, force: true });
        throw new Error(`zfs-fuse started but \`zpool list\` did not answer within 15 s (pid file ${pidFile})`);
      }
      await sleep(100);
    }
    daemonPid = Number((await readFile(pidFile, 'utf8')).trim());
  }

  const env: ZfsTestEnv = {
    zfsPath,
    zpoolPath,
    dir,
    ownsDaemon,
    zfs,
    zpool,
    async createPool(poolLabel, bytes = 512 * 1024 * 1024) {
      const name = `bpt-${poolLabel}-${suffix}`;
      const file = join(dir, `${poolLabel}.img`);
      const mountpoint = join(dir, poolLabel);
      const handle = await open(file, 'wx');
      try {
        await handle.truncate(bytes); // sparse: no blocks are written
      } finally {
        await handle.close();
      }
      await mkdir(mountpoint);
      await zpool('create', '-o', 'cachefile=none', '-m', mountpoint, name, file);
      const pool = { name, mountpoint, file };
      pools.push(pool);
      return pool;
    },
    async list(root) {
      const out = await zfs('list', '-H', '-o', 'name', '-t', 'all');
      return out.split('\n').filter((name) => name === root || name.startsWith(`${root}/`) || name.startsWith(`${root}@`));
    },
    async requestDescriptors() {
      return requestDescriptorsOf(daemonPid ?? (await findDaemonPid()));
    },
    async waitUntilIdle(idle, timeoutMs = 60_000) {
      const pid = daemonPid ?? (await findDaemonPid());
      const deadline = Date.now() + timeoutMs;
      let open = await requestDescriptorsOf(pid);
      while (open > idle) {
        if (Date.now() > deadline)
          throw new Error(`zfs-fuse (pid ${pid}) still has ${open - idle} request descriptors open after ${timeoutMs} ms`);
        await sleep(50);
        open = await requestDescriptorsOf(pid);
      }
    },
    async stop() {
      const problems: string[] = [];
      for (const pool of pools.reverse()) {
        // -f: a receive still running in the daemon, or a process with its cwd inside, must not keep it.
        // "pool is busy" can be a mount the kernel has not let go of yet: try again for a while.
        for (let attempt = 1; ; attempt++) {
          try {
            await zpool('destroy', '-f', pool.name);
            break;
          } catch (error) {
            if (attempt === 10) {
              problems.push((error as Error).message);
              break;
            }
            await sleep(500);
          }
        }
      }
      if (ownsDaemon) {
        const pid = daemonPid ?? Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
        if (pid > 0) {
          try {
            process.kill(pid, 'SIGTERM');
            // It takes a few seconds; a new daemon cannot start until this one has let go of its lock.
            const deadline = Date.now() + 20_000;
            while (!(await isGone(pid)) && Date.now() < deadline) await sleep(100);
            if (!(await isGone(pid))) {
              problems.push(`zfs-fuse (pid ${pid}) did not stop on SIGTERM within 20 s; killed`);
              process.kill(pid, 'SIGKILL');
            }
          } catch {}
        }
      }
      await unmountUnder(dir).catch(() => {});
      await rm(dir, { recursive: true, force: true }).catch((error: Error) => problems.push(error.message));
      if (problems.length > 0) console.warn(`zfs test cleanup: ${problems.join('; ')}`);
    },
  };
  return env;
}
