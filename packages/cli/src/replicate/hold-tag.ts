/** The `zfs hold` tag of a series: one per series, so that two series of one dataset keep their own holds. */
export function holdTag(seriesId: string): string {
  return `bucketpipe-${seriesId}`;
}
