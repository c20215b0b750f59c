import { parentPort, workerData } from 'node:worker_threads';
import { sealBatch } from '../../crypto/audit-chain.js';
import { SecretBytes } from '../../crypto/secret-bytes.js';
import type { AuditEvent } from '../../domain/audit.js';
import type { AuditAppend } from '../../ports/store.js';
import type { AuditThreadData, AuditThreadReply, AuditThreadRequest, AuditThreadTarget } from './audit-thread.js';

// The audit writer thread's entry (audit-thread.ts starts it). It opens its own connection to the
// store's database and appends each group it is sent to the chain, the same way the store's own
// appendAudit does there; it answers once the group is durable.

interface Appender {
  append(append: AuditAppend): void | Promise<void>;
  close(): void | Promise<void>;
}

async function openAppender(target: AuditThreadTarget): Promise<Appender> {
  if (target.kind === 'sqlite') {
    const { SqliteAuditAppender } = await import('../store-sqlite/audit-append.js');
    return new SqliteAuditAppender(target.path, target.busyTimeoutMs);
  }
  const { openPostgresAuditAppender } = await import('../store-postgres/audit-append.js');
  return openPostgresAuditAppender(target.connectionString, target.connectionTimeoutMs);
}

/** The error and its causes, as one line. */
function describe(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e; c !== undefined && parts.length < 4; c = c instanceof Error ? c.cause : undefined) parts.push(c instanceof Error ? c.message : String(c));
  return parts.join(': ');
}

const data = workerData as AuditThreadData;
const port = parentPort!;
const key = new SecretBytes(data.macKey);
data.macKey.fill(0);
const seal: AuditAppend['seal'] = (head, events) => sealBatch(key, head, events);
const appender = openAppender(data.target);
// A connection that cannot be opened fails each group with its reason (below), not the thread.
appender.catch(() => undefined);

// Messages are handled one after another: a group is appended only when the one before it is done.
let queue: Promise<void> = Promise.resolve();
port.on('message', (m: AuditThreadRequest) => {
  queue = queue.then(async () => {
    if (m.close) {
      await (await appender.catch(() => undefined))?.close();
      key.wipe();
      port.close();
      return;
    }
    let reply: AuditThreadReply;
    try {
      await (await appender).append({ events: m.events as AuditEvent[], seal });
      reply = { id: m.id, ok: true };
    } catch (e) {
      // Only the message crosses: it names the database's problem, never a record's content.
      reply = { id: m.id, ok: false, message: describe(e) };
    }
    port.postMessage(reply);
  });
});
