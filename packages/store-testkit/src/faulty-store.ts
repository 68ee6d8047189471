import { setTimeout as sleep } from 'node:timers/promises';
import {
  type GetOptions,
  type ListedObject,
  type ListOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type StoredObject,
  StoreError,
  type StoreErrorKind,
} from '@bucketpipe/core';

export type StoreOperation = 'put' | 'get' | 'head' | 'list' | 'delete';

/** One request as the wrapper saw it. For `list` the key is the prefix; for `delete`, each key is one request. */
export interface StoreRequest {
  op: StoreOperation;
  key: string;
  /** 1-based sequence number over every request this wrapper received. */
  seq: number;
}

/** What may go wrong; the effects of a rule apply in the order listed here. */
export interface FaultRule {
  /** Operations the rule applies to (default: all). */
  op?: StoreOperation | readonly StoreOperation[];
  /** Keys it applies to: a string matches exactly, a RegExp by `test` (default: all). */
  key?: string | RegExp;
  /** The first matching request (1-based, counted by this rule) that is affected. Default 1. */
  nth?: number;
  /** How many matching requests from `nth` on are affected. Default: 1 when `nth` is set, else all. */
  times?: number;
  /** Runs (and is awaited) before the request goes on: block on a gate, check an invariant. `body`: what a put writes. */
  before?: (request: StoreRequest, body: Uint8Array | undefined) => void | Promise<void>;
  /** Waits this long before the request goes on. */
  delayMs?: number;
  /** Fails the request without passing it on: a StoreError of this kind, or this error. */
  fail?: StoreErrorKind | Error;
  /** Passes the request on, then fails it anyway: the write happened but its response was lost. */
  failAfter?: StoreErrorKind | Error;
  /** `get` and `head` answer null (as if the object were absent) without asking the store. */
  absent?: boolean;
  /** Replaces the bytes a `get` returns. */
  corrupt?: (body: Uint8Array, request: StoreRequest) => Uint8Array;
}

/** Handle of an injected rule. */
export interface InjectedFault {
  readonly rule: Readonly<FaultRule>;
  /** Requests that matched the rule's op and key so far. */
  readonly matched: number;
  /** Requests the rule affected so far. */
  readonly hits: number;
  remove(): void;
}

class Fault implements InjectedFault {
  readonly rule: Readonly<FaultRule>;
  matched = 0;
  hits = 0;
  #owner: FaultyStore;
  #ops: readonly StoreOperation[] | undefined;
  #first: number;
  #last: number;

  constructor(owner: FaultyStore, rule: FaultRule) {
    this.rule = rule;
    this.#owner = owner;
    this.#ops = rule.op === undefined ? undefined : typeof rule.op === 'string' ? [rule.op] : rule.op;
    const nth = rule.nth ?? 1;
    const times = rule.times ?? (rule.nth === undefined ? Number.POSITIVE_INFINITY : 1);
    if (!Number.isInteger(nth) || nth < 1) throw new TypeError(`nth must be a positive integer, got ${rule.nth}`);
    if (!(times >= 0)) throw new TypeError(`times must be a non-negative number, got ${rule.times}`);
    this.#first = nth;
    this.#last = nth + times - 1;
  }

  /** Counts the request if it matches; true when this request is one the rule affects. */
  applies(request: StoreRequest): boolean {
    if (this.#ops && !this.#ops.includes(request.op)) return false;
    const key = this.rule.key;
    if (key !== undefined && (typeof key === 'string' ? key !== request.key : !testRegExp(key, request.key))) return false;
    this.matched++;
    if (this.matched < this.#first || this.matched > this.#last) return false;
    this.hits++;
    return true;
  }

  remove(): void {
    this.#owner.remove(this);
  }
}

/**
 * Wraps any store; injects faults by rule and counts requests per operation, e.g.
 * `faulty.inject({ op: 'put', key: /^chunks\//, nth: 3, fail: 'transient' })` fails the third
 * chunk upload once. Rules are matched in the order they were injected; every rule that applies
 * to a request contributes its effects.
 */
export class FaultyStore implements ObjectStore {
  readonly inner: ObjectStore;
  readonly description: string;
  /** Every request received (including the ones a rule failed), oldest first. */
  readonly requests: StoreRequest[] = [];
  #faults: Fault[] = [];
  #seq = 0;

  constructor(inner: ObjectStore) {
    this.inner = inner;
    this.description = inner.description;
  }

  inject(rule: FaultRule): InjectedFault {
    const fault = new Fault(this, rule);
    this.#faults.push(fault);
    return fault;
  }

  remove(fault: InjectedFault): void {
    this.#faults = this.#faults.filter((f) => f !== fault);
  }

  /** Removes every rule. */
  heal(): void {
    this.#faults = [];
  }

  /** Requests received for `op` (optionally only keys matching `key`). */
  count(op: StoreOperation, key?: string | RegExp): number {
    let n = 0;
    for (const r of this.requests) {
      if (r.op !== op) continue;
      if (key === undefined || (typeof key === 'string' ? r.key === key : testRegExp(key, r.key))) n++;
    }
    return n;
  }

  /** Requests received, per operation. */
  get counts(): Record<StoreOperation, number> {
    const counts = { put: 0, get: 0, head: 0, list: 0, delete: 0 };
    for (const r of this.requests) counts[r.op]++;
    return counts;
  }

  resetCounts(): void {
    this.requests.length = 0;
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }> {
    const request = this.#record('put', key);
    const faults = await this.#before(request, body);
    const result = await this.inner.put(key, body, options);
    this.#after(request, faults);
    return result;
  }

  async get(key: string, options?: GetOptions): Promise<StoredObject | null> {
    const request = this.#record('get', key);
    const faults = await this.#before(request);
    if (faults.some((f) => f.rule.absent)) return null;
    let result = await this.inner.get(key, options);
    this.#after(request, faults);
    for (const fault of faults) {
      if (result && fault.rule.corrupt) result = { ...result, body: fault.rule.corrupt(result.body, request) };
    }
    return result;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const request = this.#record('head', key);
    const faults = await this.#before(request);
    if (faults.some((f) => f.rule.absent)) return null;
    const result = await this.inner.head(key);
    this.#after(request, faults);
    return result;
  }

  async *list(prefix: string, options?: ListOptions): AsyncIterable<ListedObject> {
    const request = this.#record('list', prefix);
    const faults = await this.#before(request);
    yield* this.inner.list(prefix, options);
    this.#after(request, faults);
  }

  async delete(keys: readonly string[]): Promise<void> {
    const requests = keys.map((key) => this.#record('delete', key));
    const faults: Fault[] = [];
    for (const request of requests) faults.push(...(await this.#before(request)));
    await this.inner.delete(keys);
    for (const request of requests) this.#after(request, faults);
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  #record(op: StoreOperation, key: string): StoreRequest {
    const request = { op, key, seq: ++this.#seq };
    this.requests.push(request);
    return request;
  }

  /** Picks the rules for this request synchronously (so `nth` follows call order), then applies them. */
  async #before(request: StoreRequest, body?: Uint8Array): Promise<Fault[]> {
    const faults = this.#faults.filter((fault) => fault.applies(request));
    for (const fault of faults) {
      const { before, delayMs, fail } = fault.rule;
      if (before) await before(request, body);
      if (delayMs !== undefined) await sleep(delayMs);
      if (fail !== undefined) throw injectedError(fail, request);
    }
    return faults;
  }

  #after(request: StoreRequest, faults: Fault[]): void {
    for (const fault of faults) {
      if (fault.rule.failAfter !== undefined) throw injectedError(fault.rule.failAfter, request);
    }
  }
}

function injectedError(fail: StoreErrorKind | Error, request: StoreRequest): Error {
  if (fail instanceof Error) return fail;
  return new StoreError(fail, `injected ${fail} fault: ${request.op} ${request.key} (request ${request.seq})`, { key: request.key });
}

function testRegExp(pattern: RegExp, value: string): boolean {
  pattern.lastIndex = 0; // a /g or /y pattern would otherwise remember where it stopped
  return pattern.test(value);
}

/** A `corrupt` function that flips one bit of the byte at `offset` (negative: from the end). */
export function flipByte(offset: number): (body: Uint8Array) => Uint8Array {
  return (body) => {
    const out = Uint8Array.from(body);
    const at = offset < 0 ? out.length + offset : offset;
    if (at < 0 || at >= out.length) throw new RangeError(`cannot flip byte ${offset} of a ${out.length}-byte object`);
    out[at] = (out[at] ?? 0) ^ 0x01;
    return out;
  };
}

/** A `corrupt` function that keeps only the first `length` bytes (negative: drops that many from the end). */
export function truncate(length: number): (body: Uint8Array) => Uint8Array {
  return (body) => Uint8Array.from(body.subarray(0, length < 0 ? Math.max(0, body.length + length) : length));
}
