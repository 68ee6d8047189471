import { createRequire } from 'node:module';
import type * as Binding from 'zstd-napi/binding.js';

// zstd-napi's low-level binding is CommonJS without named ESM exports; the typed surface we use:
const binding = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof Binding;
export const { CCtx, DCtx, CParameter, DParameter, ResetDirective, compressBound, findFrameCompressedSize, getFrameContentSize } = binding;

/**
 * `ZSTD_d_forceIgnoreChecksum`, an experimental parameter of zstd.h that zstd-napi does not name
 * (its `setParameter` passes any number on): set to 1, zstd neither computes nor checks a frame's
 * XXH64 content checksum; 0 restores the default. An unknown parameter makes `setParameter` throw.
 */
export const FORCE_IGNORE_CHECKSUM = 1002 as Binding.DParameter;
