import { after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storeContract } from '../../../test/contract/store.contract.js';
import { openSqliteStore } from './sqlite-store.js';

const dirs: string[] = [];
function tempDbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kmsd-sqlite-'));
  dirs.push(dir);
  return join(dir, 'kmsd.db');
}
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

storeContract('sqlite', async () => openSqliteStore(tempDbPath()));
