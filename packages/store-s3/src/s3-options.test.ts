import { UsageError } from '@bucketpipe/core';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONCURRENCY, DEFAULT_HTTP_CLIENT, parseEndpoint, readS3Settings } from './s3-options.js';

describe('readS3Settings', () => {
  it('defaults: AWS, virtual-hosted, region from the chain, conditional writes required', () => {
    expect(readS3Settings({}, {})).toEqual({
      endpoint: undefined,
      pathStyle: false,
      region: undefined,
      allowUnconditionalWrites: false,
      concurrency: DEFAULT_CONCURRENCY,
      httpClient: DEFAULT_HTTP_CLIENT,
    });
  });

  it('reads the CLI options', () => {
    const settings = readS3Settings(
      {
        s3Endpoint: 'https://s3.example.com:9000/',
        s3Region: 'eu-west-3',
        s3PathStyle: true,
        allowUnconditionalWrites: true,
        concurrency: '16',
        s3HttpClient: 'undici',
      },
      {},
    );
    expect(settings).toEqual({
      endpoint: 'https://s3.example.com:9000',
      pathStyle: true,
      region: 'eu-west-3',
      allowUnconditionalWrites: true,
      concurrency: 16,
      httpClient: 'undici',
    });
  });

  it('picks the HTTP client from s3HttpClient, else BUCKETPIPE_S3_HTTP_CLIENT', () => {
    expect(readS3Settings({}, { BUCKETPIPE_S3_HTTP_CLIENT: 'undici' }).httpClient).toBe('undici');
    expect(readS3Settings({}, { BUCKETPIPE_S3_HTTP_CLIENT: ' NODE ' }).httpClient).toBe('node');
    expect(readS3Settings({ s3HttpClient: 'node' }, { BUCKETPIPE_S3_HTTP_CLIENT: 'undici' }).httpClient).toBe('node');
    expect(readS3Settings({}, { BUCKETPIPE_S3_HTTP_CLIENT: '' }).httpClient).toBe(DEFAULT_HTTP_CLIENT);
    for (const bad of [
      { options: { s3HttpClient: 'fetch' }, env: {} },
      { options: {}, env: { BUCKETPIPE_S3_HTTP_CLIENT: 'http2' } },
    ]) {
      expect(() => readS3Settings(bad.options, bad.env)).toThrow(UsageError);
      expect(() => readS3Settings(bad.options, bad.env)).toThrow(/expected node or undici/);
    }
  });

  it('a custom endpoint uses path-style addressing', () => {
    expect(readS3Settings({ s3Endpoint: 'http://127.0.0.1:7480' }, {}).pathStyle).toBe(true);
    expect(readS3Settings({ s3Endpoint: 'http://127.0.0.1:7480', s3PathStyle: false }, {}).pathStyle).toBe(true);
    expect(readS3Settings({ s3PathStyle: true }, {}).pathStyle).toBe(true);
  });

  it('honours the SDK’s endpoint variables, the option first, and AWS_IGNORE_CONFIGURED_ENDPOINT_URLS', () => {
    expect(readS3Settings({}, { AWS_ENDPOINT_URL: 'http://generic:1' }).endpoint).toBe('http://generic:1');
    expect(readS3Settings({}, { AWS_ENDPOINT_URL: 'http://generic:1', AWS_ENDPOINT_URL_S3: 'http://s3only:2' }).endpoint).toBe(
      'http://s3only:2',
    );
    expect(readS3Settings({ s3Endpoint: 'http://flag:3' }, { AWS_ENDPOINT_URL_S3: 'http://s3only:2' }).endpoint).toBe('http://flag:3');
    expect(
      readS3Settings({}, { AWS_ENDPOINT_URL_S3: 'http://s3only:2', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' }).endpoint,
    ).toBeUndefined();
    expect(readS3Settings({ s3Endpoint: '  ' }, {}).endpoint).toBeUndefined();
  });

  it.each([
    ['ftp://host', 'http:// or https://'],
    ['not a url', 'give a URL'],
    ['http://user:hunter2@host:9000', 'no user, password'],
    ['http://host:9000/?x=1', 'no user, password, query'],
  ])('refuses the endpoint %s with a usage error', (endpoint, says) => {
    let thrown: unknown;
    try {
      readS3Settings({ s3Endpoint: endpoint }, {});
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(UsageError);
    expect((thrown as Error).message).toContain(says);
    expect((thrown as Error).message).not.toContain('hunter2');
  });

  it('keeps an endpoint path (a server behind a proxy) without its trailing slash', () => {
    expect(parseEndpoint('http://proxy:8080/s3/')).toBe('http://proxy:8080/s3');
    expect(parseEndpoint('HTTPS://S3.Example.com')).toBe('https://s3.example.com');
  });

  it.each(['0', '-1', 'many', '1.5', '10001'])('refuses concurrency %s', (concurrency) => {
    expect(() => readS3Settings({ concurrency }, {})).toThrow(UsageError);
  });

  it('refuses a region that is not a region name', () => {
    expect(() => readS3Settings({ s3Region: 'us east' }, {})).toThrow(UsageError);
  });
});
