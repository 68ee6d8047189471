// The files of a dataset as tests compare them: every name with its type, mode and content hash.
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB } from './helpers.js';

export type Entry =
  | { type: 'file'; mode: number; size: number; sha256: string }
  | { type: 'dir'; mode: number }
  | { type: 'symlink'; target: string };

/** Every name under `root` (not `root` itself) with its type, permission bits and content hash or link target. */
export async function snapshotTree(root: string): Promise<Record<string, Entry>> {
  const tree: Record<string, Entry> = {};
  async function walk(relative: string): Promise<void> {
    const names = (await readdir(join(root, relative))).sort();
    for (const name of names) {
      const path = join(relative, name);
      const full = join(root, path);
      const info = await lstat(full);
      const mode = info.mode & 0o7777;
      if (info.isSymbolicLink()) tree[path] = { type: 'symlink', target: await readlink(full) };
      else if (info.isDirectory()) {
        tree[path] = { type: 'dir', mode };
        await walk(path);
      } else if (info.isFile()) {
        const bytes = await readFile(full);
        tree[path] = { type: 'file', mode, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
      } else throw new Error(`unexpected file type at ${full}`);
    }
  }
  await walk('');
  return tree;
}

/** Random and compressible files, an empty one, a private one, nested directories and symlinks: about 6 MiB. */
export async function writeSourceFiles(root: string): Promise<void> {
  await mkdir(join(root, 'sub/deeper'), { recursive: true });
  await writeFile(join(root, 'random.bin'), randomBytes(3 * MiB));
  const line = 'SELECT * FROM pgdata WHERE compressible = true;\n';
  await writeFile(join(root, 'sub/text.sql'), line.repeat(Math.ceil((2 * MiB) / line.length)));
  await writeFile(join(root, 'sub/deeper/zeros.bin'), Buffer.alloc(MiB));
  await writeFile(join(root, 'sub/deeper/empty'), '');
  await writeFile(join(root, 'private.key'), 'not a real key\n', { mode: 0o600 });
  await symlink('sub/text.sql', join(root, 'link-to-text'));
  await symlink('/nonexistent/target', join(root, 'dangling'));
}
