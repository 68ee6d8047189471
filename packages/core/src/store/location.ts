import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UsageError } from '../errors.js';
import type { ObjectStore } from './store.js';

/** Where a stream lives: a local directory, or a bucket and a key prefix in a cloud store. */
export type StreamLocation =
  | { scheme: 'file'; path: string; href: string }
  | { scheme: string; bucket: string; prefix: string; href: string };

/** Opens the store rooted at a location; store packages register one per URL scheme. */
export type StoreFactory = (location: StreamLocation, options: StoreOpenOptions) => Promise<ObjectStore>;

/** Options a factory may read (endpoint overrides and the like); unknown ones are ignored. */
export type StoreOpenOptions = Readonly<Record<string, string | boolean | undefined>>;

const factories = new Map<string, StoreFactory>();

export function registerStoreFactory(scheme: string, factory: StoreFactory): void {
  factories.set(scheme, factory);
}

export function registeredSchemes(): string[] {
  return [...factories.keys()];
}

/**
 * Parses a stream URL: `file:///abs/path` or a plain path (local directory), or `<scheme>://bucket/prefix`
 * for cloud stores (`s3://`, `gs://`).
 */
export function parseStreamUrl(text: string): StreamLocation {
  const trimmed = text.trim();
  if (trimmed === '')
    throw new UsageError('missing stream URL: give a directory, file:///path, s3://bucket/prefix or gs://bucket/prefix', 'BP_URL');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(trimmed) && !isAbsolute(trimmed)) {
      throw new UsageError(
        `cannot read stream URL ${JSON.stringify(text)}: write it as scheme://…, e.g. s3://bucket/prefix, or give a directory path`,
        'BP_URL',
      );
    }
    const path = resolve(trimmed);
    return { scheme: 'file', path, href: pathToFileURL(path).href };
  }
  if (scheme === 'file') {
    let path: string;
    try {
      path = fileURLToPath(trimmed);
    } catch (error) {
      throw new UsageError(`invalid file URL ${JSON.stringify(text)} (${(error as Error).message}): use file:///absolute/path`, 'BP_URL');
    }
    const normalized = resolve(path);
    return { scheme: 'file', path: normalized, href: pathToFileURL(normalized).href };
  }
  const rest = trimmed.slice(scheme.length + 3);
  const slash = rest.indexOf('/');
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  const prefix = (slash === -1 ? '' : rest.slice(slash + 1)).replace(/^\/+|\/+$/g, '');
  if (bucket === '') throw new UsageError(`stream URL ${JSON.stringify(text)} names no bucket: use ${scheme}://bucket/prefix`, 'BP_URL');
  if (prefix !== '' && prefix.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new UsageError(`stream URL ${JSON.stringify(text)} has an empty, "." or ".." path segment: give the prefix literally`, 'BP_URL');
  }
  if (/[?#]/.test(rest)) {
    throw new UsageError(
      `stream URL ${JSON.stringify(text)} has a query or fragment (? or #): bucket URLs take none; pass options as flags`,
      'BP_URL',
    );
  }
  return { scheme, bucket, prefix, href: `${scheme}://${bucket}${prefix ? `/${prefix}` : ''}` };
}

export async function openStore(text: string, options: StoreOpenOptions = {}): Promise<ObjectStore> {
  const location = parseStreamUrl(text);
  const factory = factories.get(location.scheme);
  if (!factory) {
    const known = registeredSchemes().map((s) => `${s}://`);
    throw new UsageError(
      `unknown URL scheme "${location.scheme}://" in ${JSON.stringify(text)}: supported are ${known.join(', ')} (or a plain directory path)`,
      'BP_URL_SCHEME',
    );
  }
  return factory(location, options);
}
