// What `kmsd serve` does before its ready line (issue #7 target 7: ready in under 1 s with --auth
// none on an empty data directory; `npm run bench:start` measures it). A start loads only what it
// uses: not the PostgreSQL driver, PKCS#11, the YAML parser, server reflection, the health service
// or fastify's schema compilers when nothing asks for them, and the ready line comes after the
// start's log lines. Which modules a process loaded is recorded by test/helpers/record-modules.mjs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { KMSD_BIN, tempDir } from '../helpers/kmsd-process.js';

const HOOK = fileURLToPath(new URL('../helpers/record-modules.mjs', import.meta.url));
/** Packages a start on SQLite with --auth none and no seed file must not load. */
const NOT_LOADED = ['pg', 'pg-pool', 'pkcs11js', 'yaml', '@peculiar/x509', '@grpc/reflection', 'grpc-health-check', '@grpc/proto-loader', 'protobufjs', 'ajv', '@fastify/ajv-compiler'];

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const dir = () => {
  const d = tempDir('kmsd-start-');
  dirs.push(d);
  return d;
};

interface Line {
  readonly event?: string;
  readonly msg?: string;
  readonly [k: string]: unknown;
}

/**
 * Starts `kmsd serve` with its stdout and stderr in one pipe, so that the order of the lines is the
 * order kmsd wrote them in; resolves once the ready line (the one on stdout: a log line has a msg)
 * is read, with every line read (more arrive until kmsd exits), the ready line's index, and a stop
 * that sends SIGTERM and resolves with the exit code.
 */
async function start(args: readonly string[], modulesFile: string): Promise<{ lines: Line[]; readyAt: number; stop(): Promise<number | null> }> {
  const env: NodeJS.ProcessEnv = { RECORD_MODULES_FILE: modulesFile };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KMSD_')) env[k] ??= v;
  const child = spawn('sh', ['-c', 'exec "$0" "$@" 2>&1', process.execPath, '--import', HOOK, KMSD_BIN, 'serve', '--rest-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines: Line[] = [];
  let readyAt = -1;
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in 20 s:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`)), 20_000);
    createInterface({ input: child.stdout }).on('line', (text) => {
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        line = { msg: text };
      }
      lines.push(line);
      if (line.event === 'ready' && line.msg === undefined && readyAt === -1) {
        readyAt = lines.length - 1;
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((code) => reject(new Error(`kmsd exited (${code}) before it was ready:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`)));
  });
  try {
    await ready;
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    lines,
    readyAt,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** The packages (node_modules/<name>/) among the recorded module URLs and paths. */
function packages(modulesFile: string): Set<string> {
  const out = new Set<string>();
  for (const m of readFileSync(modulesFile, 'utf8').matchAll(/node_modules\/((?:@[^/]+\/)?[^/\s]+)\//g)) out.add(m[1]!);
  return out;
}

describe('kmsd serve --auth none on an empty data directory', () => {
  const dataDir = dir();
  const modulesFile = join(dir(), 'modules.txt');

  it('becomes ready, writing the start\'s log lines before the ready line, and stops cleanly', async () => {
    const kmsd = await start(['--auth', 'none', '--data-dir', dataDir], modulesFile);
    assert.equal(await kmsd.stop(), 0);
    // Every line kmsd wrote, up to its exit, in the order it wrote them.
    const lines = kmsd.lines;
    const readyAt = kmsd.readyAt;
    const messages = lines.map((l) => l.msg ?? '');
    assert.equal(lines.filter((l) => l.event === 'ready' && l.msg === undefined).length, 1, 'one ready line');
    const logged = messages.findIndex((m) => m === 'kmsd is ready');
    assert.ok(logged > readyAt, 'the log line "kmsd is ready" (event ready) follows the ready line');
    assert.equal(lines[logged]!.event, 'ready');
    for (const expected of [/^--auth none: DEVELOPMENT MODE/, /^opened the store$/, /^generated TLS certificates/]) {
      const at = messages.findIndex((m) => expected.test(m));
      assert.ok(at >= 0 && at < readyAt, `"${expected.source}" is logged before the ready line:\n${messages.join('\n')}`);
    }
    assert.equal(lines[readyAt]!.auth, 'none');
    assert.ok(existsSync(join(dataDir, 'ca.pem')));
  });

  it('loads none of the modules only other configurations use', () => {
    const loaded = packages(modulesFile);
    // The record is complete enough to tell: ES modules and CommonJS ones alike are in it.
    for (const used of ['fastify', '@grpc/grpc-js', 'better-sqlite3', 'zod', 'asn1js']) assert.ok(loaded.has(used), `${used} is recorded as loaded`);
    const unexpected = NOT_LOADED.filter((p) => loaded.has(p));
    assert.deepEqual(unexpected, [], `loaded at start though unused: ${unexpected.join(', ')}`);
  });

  it('loads none of them either on the next start, which finds everything made', async () => {
    const again = join(dir(), 'modules.txt');
    const kmsd = await start(['--auth', 'none', '--data-dir', dataDir], again);
    assert.equal(await kmsd.stop(), 0);
    assert.ok(!kmsd.lines.some((l) => /^generated TLS certificates/.test(l.msg ?? '')));
    const loaded = packages(again);
    assert.deepEqual(NOT_LOADED.filter((p) => loaded.has(p)), []);
  });
});

describe('kmsd serve --seed FILE.yaml', () => {
  it('still loads the YAML parser when there is a seed file, and creates its keys', async () => {
    const seed = join(dir(), 'seed.yaml');
    writeFileSync(seed, 'keys:\n  - id: abjstartseed00000001\n    folderId: b1gstart\n    defaultAlgorithm: AES_256\n');
    const modulesFile = join(dir(), 'modules.txt');
    const kmsd = await start(['--auth', 'none', '--data-dir', dir(), '--seed', seed], modulesFile);
    try {
      const rest = kmsd.lines[kmsd.readyAt]!.rest as string;
      const res = await fetch(`http://${rest}/kms/v1/keys/abjstartseed00000001`);
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { folderId: string }).folderId, 'b1gstart');
      assert.ok(kmsd.lines.some((l) => l.msg === 'applied seed file'));
    } finally {
      assert.equal(await kmsd.stop(), 0);
    }
    assert.ok(packages(modulesFile).has('yaml'));
  });
});
