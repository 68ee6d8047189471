/** An error the server answers in the JSON API's error shape: `{ error: { code, message, errors: [...] } }`. */
export class GcsHttpError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly detail: Record<string, string>;

  constructor(status: number, reason: string, message: string, detail: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.detail = detail;
  }

  body(): string {
    const entry = { message: this.message, domain: 'global', reason: this.reason, ...this.detail };
    return JSON.stringify({ error: { code: this.status, message: this.message, errors: [entry] } });
  }
}

export const noSuchBucket = () => new GcsHttpError(404, 'notFound', 'The specified bucket does not exist.');
export const noSuchObject = (bucket: string, name: string) => new GcsHttpError(404, 'notFound', `No such object: ${bucket}/${name}`);
export const badRequest = (message: string) => new GcsHttpError(400, 'invalid', message);
export const preconditionFailed = (parameter: string) =>
  new GcsHttpError(412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.', {
    locationType: 'parameter',
    location: parameter,
  });
