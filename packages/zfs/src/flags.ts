import { UsageError } from '@bucketpipe/core';

/**
 * zfs send flags the operator may give: they change how the stream is made, not what it carries.
 * The daemon chooses what is sent (-i from, to), so -i/-I/-R and dry runs are not theirs to give.
 */
const SEND_FLAGS: Record<string, string> = {
  '-c': '-c',
  '--compressed': '-c',
  '-L': '-L',
  '--large-block': '-L',
  '-w': '-w',
  '--raw': '-w',
  '-e': '-e',
  '--embed': '-e',
  '-p': '-p',
  '--props': '-p',
  '-D': '-D',
  '--dedup': '-D',
  '-h': '-h',
  '--holds': '-h',
  '-b': '-b',
  '--backup': '-b',
};
const SEND_REFUSED: Record<string, string> = {
  '-i': 'the daemon sends each increment from the previous snapshot itself',
  '-I': 'the daemon sends each increment from the previous snapshot itself',
  '-R': 'a series replicates one dataset; -R streams are not supported',
  '-n': 'a dry run sends nothing',
  '-v': 'zfs send -v writes to stderr only for people; the daemon logs progress itself',
  '-P': 'zfs send -P prints a size estimate, not a stream',
  '-t': 'the daemon resumes from the bucket, not from a resume token',
  '-S': 'saved streams are not supported',
  '-V': 'the daemon logs progress itself',
};

/** zfs recv flags the operator may give; those that take a value (-o, -x) are followed by it. */
const RECV_FLAGS = new Set(['-F', '-u', '-s', '-M', '-h']);
const RECV_WITH_VALUE = new Set(['-o', '-x']);
const RECV_REFUSED: Record<string, string> = {
  '-n': 'a dry run receives nothing',
  '-v': 'the daemon logs progress itself',
  '-d': 'it changes the target name; give the target with --dataset',
  '-e': 'it changes the target name; give the target with --dataset',
  '-A': 'the daemon aborts a partial receive itself when -s is given',
};

/** `"-c -L"` or `"-cL"` → ["-c", "-L"]; a UsageError naming a flag that is not allowed, and why. */
export function parseSendFlags(text: string): string[] {
  const flags: string[] = [];
  for (const word of words(text)) {
    for (const flag of expand(word)) {
      const known = SEND_FLAGS[flag];
      if (known) {
        if (!flags.includes(known)) flags.push(known);
        continue;
      }
      throw new UsageError(
        `--send-flags: ${flag} ${SEND_REFUSED[flag] ? `is not allowed: ${SEND_REFUSED[flag]}` : `is not a zfs send flag bucketpipe passes on (allowed: ${allowed(SEND_FLAGS)})`}`,
        'BP_ZFS_FLAGS',
      );
    }
  }
  return flags;
}

/** `"-F -u -o canmount=off"` → ["-F", "-u", "-o", "canmount=off"]; a UsageError for a flag that is not allowed. */
export function parseRecvFlags(text: string): string[] {
  const flags: string[] = [];
  const list = words(text);
  for (let i = 0; i < list.length; i++) {
    const word = list[i] as string;
    if (RECV_WITH_VALUE.has(word)) {
      const value = list[++i];
      if (value === undefined || value.startsWith('-'))
        throw new UsageError(
          `--recv-flags: ${word} needs a value (${word === '-o' ? '-o property=value' : '-x property'})`,
          'BP_ZFS_FLAGS',
        );
      flags.push(word, value);
      continue;
    }
    for (const flag of expand(word)) {
      if (RECV_FLAGS.has(flag)) {
        if (!flags.includes(flag)) flags.push(flag);
        continue;
      }
      throw new UsageError(
        `--recv-flags: ${flag} ${RECV_REFUSED[flag] ? `is not allowed: ${RECV_REFUSED[flag]}` : `is not a zfs recv flag bucketpipe passes on (allowed: ${[...RECV_FLAGS, '-o property=value', '-x property'].join(' ')})`}`,
        'BP_ZFS_FLAGS',
      );
    }
  }
  return flags;
}

function words(text: string): string[] {
  return text.split(/\s+/).filter(Boolean);
}

/** "-cL" → ["-c", "-L"]; long options and anything that is not a flag are left whole (and refused). */
function expand(word: string): string[] {
  if (/^-[A-Za-z]{2,}$/.test(word)) return [...word.slice(1)].map((c) => `-${c}`);
  return [word];
}

function allowed(flags: Record<string, string>): string {
  return [...new Set(Object.values(flags))].join(' ');
}
