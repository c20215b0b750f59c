import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { callsWithoutMessage, parseH2loadLog, parseH2loadOutput, percentile } from '../../bench/h2load.js';

// bench/h2load.ts reads h2load's report. The samples are h2load nghttp2/1.52.0 output captured on
// the development VM against bench/baseline-grpc-server.ts and kmsd (-c 4 -m 16 -t 1 -D …).

const PREAMBLE = `starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 3s of main duration for measurements.
Warm-up started for thread #0.
progress: 25% of clients started
progress: 50% of clients started
progress: 75% of clients started
progress: 100% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0
`;

/** Encrypt against the gRPC baseline: every call answered (framed response: 166 bytes). */
const OK_SAMPLE = `${PREAMBLE}
finished in 3.00s, 11498.67 req/s, 2.20MB/s
requests: 34496 total, 34560 started, 34496 done, 34496 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 34560 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 6.59MB (6913400) total, 169.37KB (173436) headers (space savings 96.39%), 5.47MB (5736960) data
                     min         max         mean         sd        +/- sd
time for request:     1.29ms     40.96ms      5.50ms      2.47ms    85.98%
time for connect:     7.07ms     10.44ms      8.26ms      1.50ms    75.00%
time to 1st byte:    23.00ms     39.81ms     30.45ms      7.18ms    50.00%
req/s           :    2853.13     2885.24     2874.49       14.47    75.00%
`;

/** Encrypt against kmsd with a wrong token: HTTP 200 and "succeeded" for h2load, UNAUTHENTICATED in the trailers, no DATA. */
const UNAUTHENTICATED_SAMPLE = `${PREAMBLE}
finished in 2.00s, 9616.00 req/s, 842.62KB/s
requests: 19232 total, 19296 started, 19232 done, 19232 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 19280 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.65MB (1725686) total, 1.23MB (1289278) headers (space savings 72.14%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:     1.38ms     26.31ms      6.52ms      4.13ms    90.27%
time for connect:    18.74ms     34.98ms     26.25ms      8.10ms    75.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :    2391.30     2415.21     2403.30       10.31    50.00%
`;

/** Nothing listening: h2load still exits 0 and prints a report of zeros. */
const REFUSED_SAMPLE = `starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.01s, 0.00 req/s, 0B/s
requests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:        0us         0us         0us         0us     0.00%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :       0.00        0.00        0.00        0.00   100.00%
`;

/** The layout of older nghttp2 releases: plain byte counts, no timeout column, sub-second time in ms. */
const OLD_FORMAT_SAMPLE = `finished in 950.12ms, 1000.00 req/s, 120.00KB/s
requests: 1000 total, 1000 started, 1000 done, 990 succeeded, 10 failed, 0 errored
status codes: 990 2xx, 0 3xx, 10 4xx, 0 5xx
traffic: 123456 bytes total, 2345 bytes headers (space savings 90.00%), 100000 bytes data
                     min         max         mean         sd        +/- sd
time for request:      900us      12.50ms       2.00ms    500us    70.00%
`;

describe('parseH2loadOutput', () => {
  it('reads every number of a successful run', () => {
    assert.deepEqual(parseH2loadOutput(OK_SAMPLE), {
      elapsedS: 3,
      reqPerSec: 11498.67,
      requests: { total: 34496, started: 34560, done: 34496, succeeded: 34496, failed: 0, errored: 0, timeout: 0 },
      status: { '2xx': 34560, '3xx': 0, '4xx': 0, '5xx': 0 },
      trafficBytes: { total: 6913400, headers: 173436, data: 5736960 },
      requestTimeMs: { min: 1.29, max: 40.96, mean: 5.5, sd: 2.47 },
    });
  });

  it('reads the older layout and other time units', () => {
    const s = parseH2loadOutput(OLD_FORMAT_SAMPLE);
    assert.ok(Math.abs(s.elapsedS - 0.95012) < 1e-9);
    assert.equal(s.requests.timeout, 0);
    assert.equal(s.requests.failed, 10);
    assert.deepEqual(s.status, { '2xx': 990, '3xx': 0, '4xx': 10, '5xx': 0 });
    assert.deepEqual(s.trafficBytes, { total: 123456, headers: 2345, data: 100000 });
    assert.deepEqual(s.requestTimeMs, { min: 0.9, max: 12.5, mean: 2, sd: 0.5 });
  });

  it('tolerates CRLF line ends and a missing "time for request" line', () => {
    const text = OK_SAMPLE.split('\n').filter((l) => !l.startsWith('time for request')).join('\r\n');
    const s = parseH2loadOutput(text);
    assert.equal(s.reqPerSec, 11498.67);
    assert.equal(s.requestTimeMs, undefined);
  });

  it('reads a run where nothing connected (the runner rejects it: 0 done)', () => {
    const s = parseH2loadOutput(REFUSED_SAMPLE);
    assert.equal(s.requests.done, 0);
    assert.equal(s.reqPerSec, 0);
  });

  it('throws, quoting the output, when it is not a report', () => {
    assert.throws(() => parseH2loadOutput('invalid URI: https://127.0.0.1:/x\n'), /cannot read "finished in …"[\s\S]*invalid URI/);
    assert.throws(() => parseH2loadOutput(''), /output is empty/);
    const noTraffic = OK_SAMPLE.split('\n').filter((l) => !l.startsWith('traffic:')).join('\n');
    assert.throws(() => parseH2loadOutput(noTraffic), /"traffic: …"/);
    const noData = OK_SAMPLE.replace(', 5.47MB (5736960) data', '');
    assert.throws(() => parseH2loadOutput(noData), /data bytes/);
  });
});

describe('callsWithoutMessage', () => {
  it('is 0 when every 2xx stream carried one framed response', () => {
    assert.deepEqual(callsWithoutMessage(parseH2loadOutput(OK_SAMPLE), 166), { noMessage: 0, wholeMessages: true });
  });

  it('counts calls that failed in the trailers (no DATA)', () => {
    assert.deepEqual(callsWithoutMessage(parseH2loadOutput(UNAUTHENTICATED_SAMPLE), 166), { noMessage: 19232, wholeMessages: true });
  });

  it('does not count calls still in flight at the end: their headers came, their message not yet', () => {
    // kmsd sends its initial metadata before the answer: 64 streams open at the deadline with a 2xx status and no DATA.
    const inFlight = OK_SAMPLE.replace('34560 2xx', '34624 2xx');
    assert.deepEqual(callsWithoutMessage(parseH2loadOutput(inFlight), 166), { noMessage: 0, wholeMessages: true });
  });

  it('notices a DATA total that is not whole messages', () => {
    assert.deepEqual(callsWithoutMessage(parseH2loadOutput(OK_SAMPLE), 167), { noMessage: 143, wholeMessages: false });
  });
});

describe('parseH2loadLog', () => {
  it('keeps 2xx latencies in ms and counts the rest by status', () => {
    const log = ['1795826724583164\t200\t27487', '1795826724583166\t200\t1500', '1795826724583170\t-1\t900', '1795826724583171\t503\t100', 'garbage', ''].join('\n');
    const r = parseH2loadLog(log);
    assert.deepEqual(r.latenciesMs, [27.487, 1.5]);
    assert.deepEqual(r.byStatus, { '200': 2, '-1': 1, '503': 1 });
    assert.equal(r.malformed, 1);
  });
});

describe('percentile', () => {
  it('is the nearest rank', () => {
    const s = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(s, 0.5), 50);
    assert.equal(percentile(s, 0.99), 99);
    assert.equal(percentile([7], 0.99), 7);
    assert.ok(Number.isNaN(percentile([], 0.5)));
  });
});
