// `node --import ./test/helpers/record-modules.mjs …` with RECORD_MODULES_FILE=<file>: appends to the
// file every module the process (and its worker threads) loads, one URL or path a line. ES modules
// are seen by a resolve hook (which runs in the loader's own thread); CommonJS modules that other
// CommonJS modules require() do not pass the ES loader in Node 20, so the CommonJS cache is
// added when the process exits. test/integration/start.test.ts uses it to check what a start loads.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const file = process.env.RECORD_MODULES_FILE;
if (file) {
  const hook = `
    import { appendFileSync } from 'node:fs';
    let file;
    export function initialize(data) { file = data.file; }
    export async function resolve(specifier, context, next) {
      const resolved = await next(specifier, context);
      appendFileSync(file, resolved.url + '\\n');
      return resolved;
    }`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`, import.meta.url, { data: { file } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => appendFileSync(file, Object.keys(cache).map((p) => `${p}\n`).join('')));
}
