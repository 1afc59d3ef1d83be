// Runs the real portal-gateway binary (from PORTAL_GATEWAY_BIN) on port 0 for the tests.
//
// startDev() is `portal-gateway dev` (the gateway and its embedded WorkOS emulator, identity
// `Bearer dev`); startRestricted() is `portal-gateway serve` with a policy, in front of a
// standalone `portal-gateway emulator`, for calls the policy refuses.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import grpc from '@grpc/grpc-js';

const STARTUP_TIMEOUT_MS = 30_000;
const RESTRICTED_TOKEN = 'billing-token';
const RESTRICTED_API_KEY = 'sk_test_client_suites';

function binary() {
  const bin = process.env.PORTAL_GATEWAY_BIN;
  if (!bin) throw new Error('set PORTAL_GATEWAY_BIN to the portal-gateway binary');
  return bin;
}

/** A started portal-gateway process whose stdout (addresses, then audit lines) is drained. */
class Process {
  /**
   * @param {string[]} args
   * @param {Record<string, string>} [env]
   */
  constructor(args, env = {}) {
    this.child = spawn(binary(), args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.stderr = '';
    this.child.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.lines = readline.createInterface({ input: this.child.stdout });
  }

  /**
   * Reads stdout until each pattern has matched a line; resolves to each one's first group.
   * @param {Record<string, RegExp>} patterns
   * @returns {Promise<Record<string, string>>}
   */
  waitFor(patterns) {
    return new Promise((resolve, reject) => {
      /** @type {Record<string, string>} */
      const found = {};
      const fail = (why) => {
        cleanup();
        reject(new Error(`portal-gateway ${why} before printing ${Object.keys(patterns)}: ${this.stderr}`));
      };
      const timer = setTimeout(() => fail('timed out'), STARTUP_TIMEOUT_MS);
      const onExit = () => fail('exited');
      const onLine = (line) => {
        for (const [name, pattern] of Object.entries(patterns)) {
          const match = pattern.exec(line);
          if (match && !(name in found)) found[name] = match[1];
        }
        if (Object.keys(found).length === Object.keys(patterns).length) {
          cleanup();
          resolve(found);
        }
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.lines.off('line', onLine);
        this.child.off('exit', onExit);
      };
      this.lines.on('line', onLine);
      this.child.once('exit', onExit);
    });
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** The WorkOS emulator: its WorkOS API (with the key) and its control API. */
export class Emulator {
  /**
   * @param {string} origin
   * @param {string} apiKey
   */
  constructor(origin, apiKey) {
    this.origin = origin;
    this.apiKey = apiKey;
  }

  /**
   * @param {string} method
   * @param {string} pathOrUrl
   * @param {object} [body]
   * @param {{ key?: boolean }} [options] send the API key
   * @returns {Promise<{ status: number, text: string }>}
   */
  async request(method, pathOrUrl, body, { key = false } = {}) {
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : this.origin + pathOrUrl;
    const headers = { 'content-type': 'application/json' };
    if (key) headers.authorization = `Bearer ${this.apiKey}`;
    const response = await fetch(url, { method, headers, body: body && JSON.stringify(body) });
    return { status: response.status, text: await response.text() };
  }

  async control(method, route, body) {
    const { status, text } = await this.request(method, `/_emulator/${route}`, body);
    if (status !== 200 && status !== 201) throw new Error(`${method} /_emulator/${route}: ${status} ${text}`);
    return JSON.parse(text);
  }

  /** Adds a fault: `route` is `"METHOD /template"`; fields as the control API takes them. */
  fault(route, fields) {
    return this.control('POST', 'faults', { route, ...fields });
  }

  requests() {
    return this.control('GET', 'requests');
  }

  /** @returns {Promise<number>} the requests counted for `route` */
  async count(route) {
    return (await this.requests()).counts[route] ?? 0;
  }
}

/**
 * Resolves once the gateway answers grpc.health.v1.Health/Check with SERVING. The request is an
 * empty HealthCheckRequest; the SERVING answer is field 1 = 1, the bytes 08 01.
 * @param {string} target
 */
async function waitUntilServing(target) {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  try {
    const answer = await new Promise((resolve, reject) =>
      client.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        () => Buffer.alloc(0),
        (bytes) => bytes,
        {},
        new grpc.Metadata({ waitForReady: true }),
        { deadline: Date.now() + STARTUP_TIMEOUT_MS },
        (error, response) => (error ? reject(error) : resolve(response)),
      ),
    );
    if (!Buffer.from([8, 1]).equals(answer)) throw new Error(`health: ${answer.toString('hex')}`);
  } finally {
    client.close();
  }
}

/**
 * @typedef {object} Gateway
 * @property {string} target
 * @property {string} token the caller's bearer token
 * @property {Emulator} emulator
 * @property {(name: string, labels: Record<string, string>) => Promise<number>} [metric] a series from /metrics (0 when absent)
 * @property {() => Promise<void>} stop
 */

/** @returns {Promise<Gateway>} `portal-gateway dev` on port 0 */
export async function startDev() {
  const dev = new Process([
    'dev',
    '--listen',
    '127.0.0.1:0',
    '--emulator-listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
  ]);
  try {
    const found = await dev.waitFor({
      emulator: /WorkOS emulator listening on (http:\/\/\S+)/,
      apiKey: /\(API key (\S+)\)/,
      target: /portal-gateway listening on (\S+)/,
      admin: /Metrics on http:\/\/([^/\s]+)\/metrics/,
    });
    await waitUntilServing(found.target);
    return {
      target: found.target,
      token: 'dev',
      emulator: new Emulator(found.emulator, found.apiKey),
      async metric(name, labels) {
        const text = await (await fetch(`http://${found.admin}/metrics`)).text();
        for (const line of text.split('\n')) {
          const series = line.slice(0, line.lastIndexOf(' '));
          const matches = Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`));
          if (series.startsWith(`${name}{`) && matches) return Number(line.slice(series.length + 1));
        }
        return 0;
      },
      stop: () => dev.stop(),
    };
  } catch (error) {
    await dev.stop();
    throw error;
  }
}

const restrictedConfig = (digest) => `
listen = "127.0.0.1:0"

[server]
drain_delay = "10ms"

[portal]
allow_http_loopback = true

[auth]
tokens = [{ identity = "billing", sha256 = "${digest}" }]

[[policy.callers]]
name = "billing"
identities = ["token:billing"]
rpcs = ["GenerateLink"]
intents = ["sso"]
organizations = ["external:cust-*"]
return_origins = ["http://localhost:3000/settings"]
require_acting_user = true
`;

/**
 * `portal-gateway serve` whose only caller, `billing` (its token is `token`), may mint SSO
 * links for organizations with external ids `cust-*`, naming an acting user. The emulator holds
 * the organizations `cust-acme` and `globex`.
 * @returns {Promise<Gateway>}
 */
export async function startRestricted() {
  const dir = mkdtempSync(path.join(tmpdir(), 'portal-gateway-restricted-'));
  const emulatorProcess = new Process([
    'emulator',
    '--listen',
    '127.0.0.1:0',
    '--api-key',
    RESTRICTED_API_KEY,
  ]);
  let gateway;
  const stop = async () => {
    await gateway?.stop();
    await emulatorProcess.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const { origin } = await emulatorProcess.waitFor({
      origin: /WorkOS emulator listening on (http:\/\/\S+)/,
    });
    const config = path.join(dir, 'config.toml');
    writeFileSync(config, restrictedConfig(createHash('sha256').update(RESTRICTED_TOKEN).digest('hex')));
    gateway = new Process(['serve', '--config', config], {
      WORKOS_API_KEY: RESTRICTED_API_KEY,
      WORKOS_BASE_URL: origin,
    });
    const { target } = await gateway.waitFor({ target: /portal-gateway listening on (\S+)/ });
    await waitUntilServing(target);
    const emulator = new Emulator(origin, RESTRICTED_API_KEY);
    const seed = [
      { name: 'Acme Inc', external_id: 'cust-acme' },
      { name: 'Globex', external_id: 'globex' },
    ];
    await emulator.control('POST', 'seed', { organizations: seed });
    return { target, token: RESTRICTED_TOKEN, emulator, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
