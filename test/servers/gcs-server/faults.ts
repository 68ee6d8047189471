/**
 * Faults the test server can inject, by rule: the next `times` requests that match answer with
 * `status` (a GCS-style JSON error) or have their connection reset, before or after the request
 * took effect ('after' = the write landed but the client never hears so: a lost response).
 */
export interface FaultRule {
  /** HTTP method to match (any when absent). */
  method?: string;
  /** Matched against the request's path and query string, e.g. 'uploadType=multipart' or '/o/manifest.json'. */
  match?: string;
  /** How many matching requests fail (default 1). */
  times?: number;
  /** Let this many matching requests through first (default 0). */
  skip?: number;
  /** Answer this status instead of the real response. */
  status?: number;
  /** Destroy the connection instead of answering. */
  reset?: boolean;
  /** Wait this long before handling the request. */
  delayMs?: number;
  /** 'before' (default): the request has no effect; 'after': it takes effect, then the response is replaced. */
  when?: 'before' | 'after';
}

export interface ArmedFault extends FaultRule {
  remaining: number;
  toSkip: number;
}

export class Faults {
  #rules: ArmedFault[] = [];
  #hits = 0;

  add(rule: FaultRule): void {
    if (rule.status === undefined && !rule.reset && rule.delayMs === undefined) {
      throw new TypeError('a fault rule needs status, reset or delayMs');
    }
    this.#rules.push({ ...rule, remaining: rule.times ?? 1, toSkip: rule.skip ?? 0 });
  }

  clear(): void {
    this.#rules = [];
  }

  /** How many requests a fault was applied to so far. */
  get hits(): number {
    return this.#hits;
  }

  /** Takes one use of the first rule matching the request, if any. */
  take(method: string, pathAndQuery: string): ArmedFault | undefined {
    const rule = this.#rules.find(
      (r) =>
        r.remaining > 0 && (r.method === undefined || r.method === method) && (r.match === undefined || pathAndQuery.includes(r.match)),
    );
    if (!rule) return undefined;
    if (rule.toSkip > 0) {
      rule.toSkip--;
      return undefined;
    }
    rule.remaining--;
    this.#hits++;
    this.#rules = this.#rules.filter((r) => r.remaining > 0);
    return rule;
  }
}
