import { describe, expect, it } from 'vitest';
import { StatusLine } from './status-line.js';

function line(columns?: number) {
  const writes: string[] = [];
  return { writes, status: new StatusLine({ columns, write: (text: string) => void writes.push(text) }) };
}

describe('StatusLine', () => {
  it('redraws in place, padding a shorter line over the longer one before it', () => {
    const { writes, status } = line();
    status.draw('receive 10.0 MiB written');
    status.draw('receive 9 B');
    expect(writes).toEqual(['\rreceive 10.0 MiB written', `\r${'receive 9 B'.padEnd(24)}`]);
  });

  it('cuts a line to the terminal width (a wrapped line could not be redrawn)', () => {
    const { writes, status } = line(20);
    status.draw('x'.repeat(50));
    expect(writes[0]).toBe(`\r${'x'.repeat(18)}…`);
    status.draw('y'.repeat(19));
    expect(writes[1]).toBe(`\r${'y'.repeat(19)}`);
  });

  it('clears once, and only what it drew', () => {
    const { writes, status } = line();
    status.clear();
    status.draw('abc');
    status.clear();
    status.clear();
    expect(writes).toEqual(['\rabc', '\r   \r']);
  });
});
