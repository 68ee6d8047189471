import { describe, expect, it } from 'vitest';
import { ReadAhead } from './read-ahead.js';

/** The receiver's calls for chunks [from, to): each started, waited for before it was downloaded, then downloaded. */
function waitForEach(readAhead: ReadAhead, from: number, to: number): void {
  for (let index = from; index < to; index++) {
    readAhead.started(index);
    readAhead.sinkWaitsFor(index);
    readAhead.downloaded(index);
  }
}

describe('ReadAhead', () => {
  it('starts at its initial limit, never above the maximum', () => {
    expect(new ReadAhead(6, 27).limit).toBe(6);
    expect(new ReadAhead(6, 4).limit).toBe(4);
  });

  it('doubles, up to the maximum, each time the sink waits for a download the limit held back', () => {
    const readAhead = new ReadAhead(6, 27);
    readAhead.heldBack(100);
    const limits: number[] = [];
    for (let index = 6; index < 10; index++) {
      readAhead.started(index);
      readAhead.sinkWaitsFor(index);
      limits.push(readAhead.limit);
    }
    expect(limits).toEqual([12, 24, 27, 27]);
  });

  it('stays where it is while the chunks waited for were started as soon as they were known', () => {
    const readAhead = new ReadAhead(6, 27);
    // The first chunks, started at once: their download time is latency the limit did not add.
    waitForEach(readAhead, 0, 6);
    // A live sender: the limit held back chunks 6…9 only; 10 onwards started as they were written.
    readAhead.heldBack(10);
    waitForEach(readAhead, 10, 20);
    expect(readAhead.limit).toBe(6);
    waitForEach(readAhead, 9, 10);
    expect(readAhead.limit).toBe(12);
  });

  it('stays where it is while the held-back downloads finish before the sink needs them', () => {
    const readAhead = new ReadAhead(6, 27);
    readAhead.heldBack(1000);
    for (let index = 6; index < 1000; index++) {
      readAhead.started(index);
      readAhead.downloaded(index);
    }
    expect(readAhead.limit).toBe(6);
  });

  it('refuses limits that would stop every download', () => {
    expect(() => new ReadAhead(0, 4)).toThrow(RangeError);
    expect(() => new ReadAhead(2, 0)).toThrow(RangeError);
    expect(() => new ReadAhead(1.5, 4)).toThrow(RangeError);
  });
});
