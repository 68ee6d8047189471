export const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The JSON object `bytes` hold; `malformed(what)` makes the error for bytes that are not one. */
export function parseJsonObject(bytes: Uint8Array, malformed: (what: string) => Error): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw malformed('not valid JSON');
  }
  if (!isRecord(value)) throw malformed('not a JSON object');
  return value;
}
