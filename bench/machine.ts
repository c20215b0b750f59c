import { execFileSync } from 'node:child_process';
import { arch, cpus, platform, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

// What every bench/results/*.json records about where it ran: the machine and the commit.

/** The repository's root directory. */
export const root = fileURLToPath(new URL('..', import.meta.url));

export const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  node: process.version,
  os: `${platform()} ${release()} ${arch()}`,
  memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
};

/** HEAD of the checkout at `cwd`, and whether tracked files differ from it; undefined outside git. */
export function gitRevision(cwd = root): { commit: string; dirty: boolean } | undefined {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { commit, dirty: status.trim() !== '' };
  } catch {
    return undefined;
  }
}

/** bench/results/<ISO time with ':' replaced>.json, valid on every file system; `suffix` tells runners apart. */
export function resultFileName(startedAt: Date, suffix = ''): string {
  return `${startedAt.toISOString().replace(/:/g, '-')}${suffix}.json`;
}
