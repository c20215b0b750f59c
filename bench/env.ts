// The benchmark runners' settings from the environment (BENCH_*).

/** A number from the environment, or `fallback` when unset; anything else below `min` stops the run (exit 2). */
export function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`bench: ${name} must be a number ≥ ${min}, got "${raw}"\n`);
    process.exit(2);
  }
  return n;
}
