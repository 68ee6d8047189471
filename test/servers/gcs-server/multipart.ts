import { badRequest } from './errors.js';

export interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

/** Splits a `multipart/related` body (RFC 2387), as a JSON API multipart upload sends it. */
export function parseMultipart(contentType: string | undefined, body: Buffer): Part[] {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? '');
  if (!/^multipart\/related/i.test(contentType ?? '') || !boundary) {
    throw badRequest(`Multipart upload needs Content-Type multipart/related with a boundary, got ${JSON.stringify(contentType)}`);
  }
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const parts: Part[] = [];
  let at = body.indexOf(delimiter);
  if (at === -1) throw badRequest('Multipart body has no boundary line');
  for (;;) {
    at += delimiter.length;
    if (body.subarray(at, at + 2).toString() === '--') break; // the closing delimiter
    if (body.subarray(at, at + 2).toString() !== '\r\n') throw badRequest('Malformed multipart boundary line');
    at += 2;
    const headerEnd = body.indexOf('\r\n\r\n', at);
    if (headerEnd === -1) throw badRequest('Multipart part without a blank line after its headers');
    const headers: Record<string, string> = {};
    for (const line of body.subarray(at, headerEnd).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const start = headerEnd + 4;
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), start);
    if (next === -1) throw badRequest('Multipart part is not closed by a boundary');
    parts.push({ headers, body: body.subarray(start, next) });
    at = next + 2;
  }
  return parts;
}
