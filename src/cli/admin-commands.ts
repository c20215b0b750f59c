import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Command, Option } from 'commander';

// `kmsd principals …`, `kmsd tokens …`, `kmsd bindings …`: thin clients of kmsd's own REST API
// (/kmsd/v1, see the README). The token comes from --token-file or KMSD_TOKEN, never from a flag
// value that `ps` would show.

interface ClientOptions {
  endpoint?: string;
  tokenFile?: string;
  caFile?: string;
}

class CliError extends Error {}

function token(o: ClientOptions): string {
  if (process.env.KMSD_TOKEN) return process.env.KMSD_TOKEN.trim();
  const file = o.tokenFile ?? process.env.KMSD_TOKEN_FILE ?? (existsSync('kmsd-data/admin.token') ? 'kmsd-data/admin.token' : undefined);
  if (file === undefined) throw new CliError('no token: pass --token-file FILE or set KMSD_TOKEN (the bootstrap token is <data-dir>/admin.token)');
  return readFileSync(file, 'utf8').trim();
}

async function call(o: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const base = new URL(o.endpoint ?? process.env.KMSD_ENDPOINT ?? 'http://127.0.0.1:8080');
  const url = new URL(path, base);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const caFile = o.caFile ?? process.env.KMSD_CA_FILE;
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const text = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = send(
      url,
      {
        method,
        headers: { authorization: `Bearer ${token(o)}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(url.protocol === 'https:' && caFile ? { ca: readFileSync(caFile) } : {}),
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: data }));
      },
    );
    req.on('error', (e) => reject(new CliError(`cannot reach kmsd at ${base.origin}: ${e.message}`)));
    req.end(payload);
  });
  const json = text.text === '' ? {} : (JSON.parse(text.text) as unknown);
  if (text.status >= 400) {
    const e = json as { message?: string; code?: number };
    throw new CliError(`HTTP ${text.status}: ${e.message ?? text.text}`);
  }
  return json;
}

const print = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
};

function withClientOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--endpoint <url>', 'kmsd REST endpoint [KMSD_ENDPOINT] (default http://127.0.0.1:8080)'))
    .addOption(new Option('--token-file <file>', 'file holding the bearer token [KMSD_TOKEN_FILE, or KMSD_TOKEN for the token itself] (default kmsd-data/admin.token)'))
    .addOption(new Option('--ca-file <file>', 'CA to trust for an https endpoint [KMSD_CA_FILE]'));
}

function action<A extends unknown[]>(run: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (e) {
      if (e instanceof CliError) {
        process.stderr.write(`kmsd: ${e.message}\n`);
        process.exit(1);
      }
      throw e;
    }
  };
}

/** `serviceAccount:aje…`, `userAccount:aje…`, `system:allAuthenticatedUsers`. */
function subject(spec: string): { type: string; id: string } {
  const at = spec.indexOf(':');
  if (at <= 0 || at === spec.length - 1) throw new CliError(`--subject must be TYPE:ID, e.g. serviceAccount:aje123… or system:allAuthenticatedUsers; got "${spec}"`);
  return { type: spec.slice(0, at), id: spec.slice(at + 1) };
}

function scopePath(o: { folder?: string; installation?: boolean }): string {
  if (o.folder !== undefined && o.installation) throw new CliError('give either --folder or --installation, not both');
  if (o.folder !== undefined) return `/kmsd/v1/folders/${encodeURIComponent(o.folder)}`;
  if (o.installation) return '/kmsd/v1/installation';
  throw new CliError('give --folder FOLDER_ID or --installation (key bindings go through the KMS API: :setAccessBindings)');
}

export function addAdminCommands(program: Command): void {
  const principals = program.command('principals').description('user and service accounts of this kmsd');
  withClientOptions(principals.command('create').description('create a principal; prints it as JSON'))
    .requiredOption('--name <name>', 'a name, ≤ 63 characters')
    .addOption(new Option('--type <type>', 'serviceAccount or userAccount').default('serviceAccount'))
    .option('--description <text>', 'free text')
    .action(action(async (o: ClientOptions & { name: string; type: string; description?: string }) => print(await call(o, 'POST', '/kmsd/v1/principals', { type: o.type, name: o.name, ...(o.description ? { description: o.description } : {}) }))));
  withClientOptions(principals.command('list').description('list principals'))
    .action(action(async (o: ClientOptions) => {
      const all: unknown[] = [];
      let pageToken = '';
      do {
        const page = (await call(o, 'GET', `/kmsd/v1/principals?pageSize=1000&pageToken=${encodeURIComponent(pageToken)}`)) as { principals: unknown[]; nextPageToken: string };
        all.push(...page.principals);
        pageToken = page.nextPageToken;
      } while (pageToken);
      print(all);
    }));
  withClientOptions(principals.command('delete').description('delete a principal with its tokens and bindings').argument('<principalId>'))
    .action(action(async (id: string, o: ClientOptions) => {
      await call(o, 'DELETE', `/kmsd/v1/principals/${encodeURIComponent(id)}`);
      process.stdout.write(`deleted ${id}\n`);
    }));

  const tokens = program.command('tokens').description('bearer tokens of principals');
  withClientOptions(tokens.command('create').description('issue a token; prints only the token (shown once)').argument('<principalId>'))
    .option('--expires-in <duration>', 'lifetime such as 86400s (default: no expiry)')
    .option('--description <text>', 'free text')
    .option('--json', 'print the whole record as JSON, token included')
    .action(action(async (id: string, o: ClientOptions & { expiresIn?: string; description?: string; json?: boolean }) => {
      const issued = (await call(o, 'POST', `/kmsd/v1/principals/${encodeURIComponent(id)}/tokens`, { ...(o.expiresIn ? { expiresIn: o.expiresIn } : {}), ...(o.description ? { description: o.description } : {}) })) as { token: string };
      if (o.json) print(issued);
      else process.stdout.write(`${issued.token}\n`);
    }));
  withClientOptions(tokens.command('list').description("list a principal's tokens (never their secrets)").argument('<principalId>'))
    .action(action(async (id: string, o: ClientOptions) => print(((await call(o, 'GET', `/kmsd/v1/principals/${encodeURIComponent(id)}/tokens`)) as { tokens: unknown[] }).tokens)));
  withClientOptions(tokens.command('revoke').description('revoke a token at once').argument('<tokenId>'))
    .action(action(async (id: string, o: ClientOptions) => {
      await call(o, 'DELETE', `/kmsd/v1/tokens/${encodeURIComponent(id)}`);
      process.stdout.write(`revoked ${id}\n`);
    }));

  const bindings = program.command('bindings').description('access bindings of a folder (inherited by its keys) or of the whole installation');
  const scoped = (cmd: Command) => withClientOptions(cmd).option('--folder <folderId>', 'a folder').option('--installation', 'the whole installation');
  scoped(bindings.command('list').description('list bindings'))
    .action(action(async (o: ClientOptions & { folder?: string; installation?: boolean }) => print(((await call(o, 'GET', `${scopePath(o)}:listAccessBindings`)) as { accessBindings?: unknown[] }).accessBindings ?? [])));
  for (const [name, action_] of [['add', 'ADD'], ['remove', 'REMOVE']] as const) {
    scoped(bindings.command(name).description(`${name} a role for a subject`))
      .requiredOption('--role <roleId>', 'e.g. kms.keys.encrypterDecrypter')
      .requiredOption('--subject <type:id>', 'e.g. serviceAccount:aje… or system:allAuthenticatedUsers')
      .action(action(async (o: ClientOptions & { folder?: string; installation?: boolean; role: string; subject: string }) =>
        print(await call(o, 'POST', `${scopePath(o)}:updateAccessBindings`, { accessBindingDeltas: [{ action: action_, accessBinding: { roleId: o.role, subject: subject(o.subject) } }] })),
      ));
  }
}
