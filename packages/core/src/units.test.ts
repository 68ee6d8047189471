import { describe, expect, it } from 'vitest';
import { formatBytes, formatRate, parseByteSize, parseRate } from './units.js';

describe('parseByteSize', () => {
  it('reads the sizes operators type', () => {
    const cases: Array<[string, number]> = [
      ['16MiB', 16 * 1024 * 1024],
      ['512M', 512_000_000],
      ['1GiB', 1024 ** 3],
      ['1.5G', 1_500_000_000],
      ['4096', 4096],
      ['0', 0],
      ['1b', 1],
      ['1k', 1000],
      ['1KB', 1000],
      ['1KiB', 1024],
      ['1mb', 1_000_000],
      ['2gb', 2_000_000_000],
      ['1T', 1e12],
      ['1tb', 1e12],
      ['1TiB', 1024 ** 4],
      ['16 MiB', 16 * 1024 * 1024],
      ['  64k  ', 64_000],
      ['0.5KiB', 512],
    ];
    for (const [text, bytes] of cases) expect([text, parseByteSize(text)]).toEqual([text, bytes]);
  });

  it('returns null for anything that is not a size', () => {
    for (const text of ['', ' ', 'garbage', 'MiB', '16MiBs', '16 M iB', '1e3', '0x10', '1,5G', '1.G', '.5G', '16PiB', '1..5G', '1 2']) {
      expect([text, parseByteSize(text)]).toEqual([text, null]);
    }
  });

  it('returns null for negative sizes', () => {
    for (const text of ['-1', '-16MiB', '- 1', '+1']) expect([text, parseByteSize(text)]).toEqual([text, null]);
  });

  it('returns null when the size is beyond exact integers', () => {
    expect(parseByteSize('9007199254740991')).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseByteSize('9007199254740993')).toBeNull();
    expect(parseByteSize('99999999TiB')).toBeNull();
  });
});

describe('formatBytes', () => {
  it('uses binary units with two decimals below 10 and one above', () => {
    const cases: Array<[number, string]> = [
      [0, '0 B'],
      [1, '1 B'],
      [1023, '1023 B'],
      [1024, '1.00 KiB'],
      [1536, '1.50 KiB'],
      [16 * 1024 * 1024, '16.0 MiB'],
      [1.5 * 1024 ** 3, '1.50 GiB'],
      [512 * 1024 ** 4, '512.0 TiB'],
      [1024 ** 5, '1.00 PiB'],
      [2048 * 1024 ** 5, '2048.0 PiB'],
      [-2048, '-2.00 KiB'],
    ];
    for (const [bytes, text] of cases) expect([bytes, formatBytes(bytes)]).toEqual([bytes, text]);
  });

  it('round-trips through parseByteSize for exact binary sizes', () => {
    expect(parseByteSize(formatBytes(16 * 1024 * 1024).replace(' ', ''))).toBe(16 * 1024 * 1024);
  });
});

describe('formatRate', () => {
  it('gives decimal megabytes per second', () => {
    expect(formatRate(5_000_000, 2)).toBe('2.5 MB/s');
    expect(formatRate(123_456_789, 1)).toBe('123.5 MB/s');
    expect(formatRate(1_000_000, 0)).toBe('0.0 MB/s');
  });
});

describe('parseRate', () => {
  it('reads the rates operators type, in bytes per second', () => {
    const cases: Array<[string, number]> = [
      ['200MB/s', 200e6],
      ['200MB', 200e6],
      ['200M', 200e6],
      ['200M/s', 200e6],
      ['20MBps', 20e6],
      ['50MiB/s', 50 * 1024 ** 2],
      ['512KiB/s', 512 * 1024],
      ['64kB/s', 64_000],
      ['1.5GB/s', 1.5e9],
      ['1Gbit/s', 125e6],
      ['800Mbit/s', 100e6],
      ['10Gbits/s', 1.25e9],
      ['1Gbps', 125e6],
      ['100Mbps', 12.5e6],
      ['8bps', 1],
      ['1000000', 1e6],
      ['1000000/s', 1e6],
      ['1000000B/s', 1e6],
      [' 20 MB/s ', 20e6],
    ];
    for (const [text, rate] of cases) expect([text, parseRate(text)]).toEqual([text, rate]);
  });

  it('refuses a lone lowercase b: bits or bytes must be spelled out', () => {
    for (const text of ['200Mb/s', '200mb/s', '200Mb', '1Gib/s', '100b/s']) expect([text, parseRate(text)]).toEqual([text, null]);
  });

  it('returns null for anything that is not a positive rate', () => {
    for (const text of [
      '',
      'fast',
      '0',
      '0MB/s',
      '-1MB/s',
      'MB/s',
      '200XB/s',
      '200MB/h',
      '200MB/s/s',
      '1Gbps/s',
      '1e6',
      '2 00MB/s',
      '200PB/s',
    ]) {
      expect([text, parseRate(text)]).toEqual([text, null]);
    }
  });
});
