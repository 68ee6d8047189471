import { describe, expect, it } from 'vitest';
import { Watermark } from './watermark.js';

describe('Watermark', () => {
  it('starts at zero', () => {
    const w = new Watermark();
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([0, 0, 0]);
  });

  it('advances over chunks finished in order', () => {
    const w = new Watermark();
    w.finish(0, 100, 10);
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([1, 100, 10]);
    w.finish(1, 100, 20);
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([2, 200, 30]);
  });

  it('holds at the first gap when chunks finish out of order, counting only bytes below it', () => {
    const w = new Watermark();
    w.finish(2, 100, 3);
    w.finish(1, 100, 2);
    w.finish(4, 50, 5);
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([0, 0, 0]);
    w.finish(0, 100, 1);
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([3, 300, 6]);
    w.finish(3, 100, 4);
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([5, 450, 15]);
  });

  it('handles a long reversed sequence', () => {
    const w = new Watermark();
    for (let i = 999; i >= 1; i--) w.finish(i, 2, 1);
    expect(w.value).toBe(0);
    w.finish(0, 2, 1);
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([1000, 2000, 1000]);
  });

  it('throws when a chunk below the watermark finishes twice', () => {
    const w = new Watermark();
    w.finish(0, 1, 1);
    expect(() => w.finish(0, 1, 1)).toThrow('chunk 0 finished twice');
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([1, 1, 1]);
  });

  it('throws when a chunk above the watermark finishes twice, and keeps the first', () => {
    const w = new Watermark();
    w.finish(3, 10, 10);
    expect(() => w.finish(3, 99, 99)).toThrow('chunk 3 finished twice');
    w.finish(0, 1, 1);
    w.finish(1, 1, 1);
    w.finish(2, 1, 1);
    expect([w.value, w.rawBytes, w.storedBytes]).toEqual([4, 13, 13]);
  });
});
