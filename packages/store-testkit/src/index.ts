export { compressibleBytes, partlyCompressibleBytes, pieces, randomBytes } from './bytes.js';
export { type ConformanceOptions, describeStoreConformance, expectStoreError } from './conformance.js';
export {
  type FaultRule,
  FaultyStore,
  flipByte,
  type InjectedFault,
  type StoreOperation,
  type StoreRequest,
  truncate,
} from './faulty-store.js';
export { reachableByOthers } from './fs-permissions.js';
export { MemorySink } from './memory-sink.js';
export { byteOrder, MemoryStore } from './memory-store.js';
