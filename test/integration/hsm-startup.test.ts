// A PKCS#11 root key that cannot be used stops `kmsd serve` before it listens: a clear message,
// a non-zero exit, and nothing written — the data directory is not even created.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { expectStartFailure, KmsdProcess, tempDir } from '../helpers/kmsd-process.js';
import { pkcs11Spec, uniqueLabel, withSoftHsm, type SoftHsm } from '../helpers/softhsm.js';

withSoftHsm('PKCS#11 root key: refusals at start', (hsm: SoftHsm) => {
  const dir = tempDir('kmsd-hsm-start-');
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;

  /** Starts kmsd with `rootKey` in a data directory that must still not exist afterwards. */
  async function refused(rootKey: string, env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
    const dataDir = join(dir, `data-${++n}`);
    const failed = await expectStartFailure({ dataDir, auth: 'none', rootKey, env });
    assert.notEqual(failed.code, 0, 'a non-zero exit');
    assert.equal(failed.signal, null, 'an exit, not a crash');
    assert.equal(existsSync(dataDir), false, 'nothing was written: not even the data directory');
    assert.equal(failed.stdout, '', 'no ready line');
    return { code: failed.code, stderr: failed.stderr };
  }

  function pinFile(pin: string): string {
    const path = join(dir, `pin-${++n}`);
    writeFileSync(path, pin, { mode: 0o600 });
    return path;
  }

  it('a wrong PIN', async () => {
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const { code, stderr } = await refused(pkcs11Spec({ ...hsm, pinFile: pinFile(wrong) }, uniqueLabel()));
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`kmsd: PKCS#11 token "${hsm.token}": login failed: the PIN is incorrect`));
    assert.equal(stderr.includes(wrong), false, 'the PIN is never printed');
  });

  it('a wrong PIN from pin-env, not shown either', async () => {
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const spec = pkcs11Spec(hsm, uniqueLabel()).replace(/pin-file=[^;]*/, 'pin-env=KMSD_TEST_HSM_PIN');
    const { stderr } = await refused(spec, { KMSD_TEST_HSM_PIN: wrong });
    assert.match(stderr, /login failed: the PIN is incorrect/);
    assert.equal(stderr.includes(wrong), false);
  });

  it('a token that does not exist', async () => {
    const { code, stderr } = await refused(pkcs11Spec({ ...hsm, token: 'no-such-token' }, uniqueLabel()));
    assert.equal(code, 1);
    assert.match(stderr, /kmsd: PKCS#11 module .* has no token "no-such-token" \(tokens present: .*"kmsd-test"/);
  });

  it('a root key label that is not in the token (without create=yes)', async () => {
    const label = uniqueLabel();
    const { code, stderr } = await refused(pkcs11Spec(hsm, label, {}));
    assert.equal(code, 1);
    assert.ok(stderr.includes(`kmsd: PKCS#11 token "${hsm.token}" has no key labelled "${label}"; create it, or add create=yes to --root-key`), stderr);
  });

  it('a module that fails to load', async () => {
    const { code, stderr } = await refused(pkcs11Spec({ ...hsm, module: '/usr/lib/no-such-pkcs11.so' }, uniqueLabel()));
    assert.equal(code, 1);
    assert.match(stderr, /kmsd: PKCS#11 module \/usr\/lib\/no-such-pkcs11\.so cannot be loaded: .*No such file or directory/);
    const notALibrary = join(dir, 'not-a-library.so');
    writeFileSync(notALibrary, 'not ELF');
    assert.match((await refused(pkcs11Spec({ ...hsm, module: notALibrary }, uniqueLabel()))).stderr, /cannot be loaded: .*(invalid ELF header|file too short)/);
  });

  it('a missing PIN file, an unset PIN variable, a PIN file others can read', async () => {
    assert.match((await refused(pkcs11Spec({ ...hsm, pinFile: join(dir, 'absent.pin') }, uniqueLabel()))).stderr, /cannot read the PKCS#11 PIN file .*absent\.pin: ENOENT/);
    const viaEnv = pkcs11Spec(hsm, uniqueLabel()).replace(/pin-file=[^;]*/, 'pin-env=KMSD_TEST_UNSET_PIN');
    assert.match((await refused(viaEnv)).stderr, /environment variable KMSD_TEST_UNSET_PIN \(the PKCS#11 PIN\) is not set/);
    const open = join(dir, 'open.pin');
    writeFileSync(open, 'x', { mode: 0o644 });
    assert.match((await refused(pkcs11Spec({ ...hsm, pinFile: open }, uniqueLabel()))).stderr, /readable by others \(mode 644\); chmod 600 it/);
  });

  it('a PIN in the spec itself is refused as configuration (exit 2), without echoing it', async () => {
    const pin = `pin-${randomBytes(6).toString('hex')}`;
    const { code, stderr } = await refused(`pkcs11:module=${hsm.module};token=${hsm.token};pin-value=${pin};key-label=x`);
    assert.equal(code, 2);
    assert.match(stderr, /--root-key \(KMSD_ROOT_KEY\): pkcs11: a PIN in --root-key would show in ps/);
    assert.equal(stderr.includes(pin), false);
  });

  describe('the same token and label that worked', () => {
    it('a data directory made with a file root key refuses the HSM root key unless the file key is given as --previous-root-key', async () => {
      const kmsd = await KmsdProcess.start({ auth: 'none' });
      try {
        await kmsd.stop();
        const failed = await expectStartFailure({ dataDir: kmsd.dataDir, auth: 'none', rootKey: pkcs11Spec(hsm, uniqueLabel()) });
        assert.equal(failed.code, 1);
        assert.match(failed.stderr, /is not the one this data directory was initialised with; refusing to start \(during a root-key rotation, give the old key as --previous-root-key\)/);
      } finally {
        await kmsd.dispose();
      }
    });
  });
});
