// kmsd's JSON log lines (stderr) from tests.

/** The JSON log lines of kmsd's stderr (partial lines skipped). */
export function logLines(stderr: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line
    }
  }
  return out;
}

/** Sum of `purged` in the scheduler's "background key work" log lines (of every process). */
export function purgedCount(stderr: string): number {
  return logLines(stderr)
    .filter((l) => l.msg === 'background key work' && typeof l.purged === 'number')
    .reduce((total, l) => total + (l.purged as number), 0);
}
