import { createRequire } from 'node:module';
import type * as Binding from 'zstd-napi/binding.js';

// zstd-napi's low-level binding is CommonJS without named ESM exports; the typed surface we use:
const binding = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof Binding;
export const { CCtx, DCtx, CParameter, DParameter, ResetDirective, compressBound, findFrameCompressedSize, getFrameContentSize } = binding;
