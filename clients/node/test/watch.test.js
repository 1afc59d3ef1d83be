// SetupService.WatchSetup through the client's resuming async generator.
//
// They live in this file so a run can leave them out; they are never skipped.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { afterEach, beforeEach, describe, test } from 'node:test';

import { Client } from '../src/index.js';
import { startDev } from './gateway.js';

/**
 * A TCP proxy to the gateway that can cut every connection and hold new ones until resumed, so
 * a stream fails with UNAVAILABLE while the gateway itself keeps running.
 */
class CuttableProxy {
  /** @param {string} target */
  constructor(target) {
    const [host, port] = [
      target.slice(0, target.lastIndexOf(':')),
      Number(target.slice(target.lastIndexOf(':') + 1)),
    ];
    this.sockets = new Set();
    this.held = [];
    this.paused = false;
    this.server = net.createServer((downstream) => {
      if (this.paused) this.held.push(downstream);
      else this.connect(downstream);
    });
    this.upstream = { host, port };
  }

  /** @returns {Promise<string>} the proxy's own target */
  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${this.server.address().port}`;
  }

  /** @param {net.Socket} downstream */
  connect(downstream) {
    const upstream = net.connect(this.upstream);
    for (const [a, b] of [
      [downstream, upstream],
      [upstream, downstream],
    ]) {
      this.sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.sockets.delete(a);
        b.destroy();
      });
    }
  }

  /** Closes every connection; new ones wait until `resume`. */
  cut() {
    this.paused = true;
    for (const socket of this.sockets) socket.destroy();
  }

  resume() {
    this.paused = false;
    for (const downstream of this.held.splice(0)) this.connect(downstream);
  }

  close() {
    this.cut();
    for (const downstream of this.held.splice(0)) downstream.destroy();
    this.server.close();
  }
}

/** @param {any} message @returns {string} the domain_verification intent's state */
function domainState(message) {
  const [status] = message.intents.filter((s) => s.intent === 'INTENT_DOMAIN_VERIFICATION');
  assert.ok(status, 'no domain_verification status');
  return status.state;
}

/** The next value of an async iterator, or a failure after `ms`. */
async function next(iterator, ms = 20_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no message within ${ms} ms`)), ms);
  });
  try {
    const { value, done } = await Promise.race([iterator.next(), timeout]);
    assert.ok(!done, 'the stream ended');
    return value;
  } finally {
    clearTimeout(timer);
  }
}

describe('WatchSetup', () => {
  /** @type {import('./gateway.js').Gateway} */
  let gateway;
  /** @type {Client} */
  let client;
  /** An organization with one pending domain. */
  let org;

  beforeEach(async () => {
    gateway = await startDev();
    client = new Client(gateway.target, 'dev');
    const externalId = `watch-${randomUUID().slice(0, 12)}`;
    ({ organization: org } = await client.ensureOrganization(externalId, 'Acme Inc', {
      domains: ['acme.example'],
    }));
  });
  afterEach(async () => {
    client.close();
    await gateway.stop();
  });

  test('starts with a snapshot of the organization', async () => {
    let message;
    // snippet:node-watch-start
    for await (message of client.watchSetup(org.id, ['domain_verification'])) {
      break; // message.event, message.intents, message.cursor
    }
    // snippet:node-watch-end
    assert.equal(message.snapshotReason, 'SNAPSHOT_REASON_INITIAL');
    assert.ok(message.cursor);
    assert.equal(message.status.organizationId, org.id);
    assert.equal(domainState(message), 'SETUP_STATE_IN_PROGRESS');
  });

  test('resumes from the last cursor after UNAVAILABLE', async () => {
    const proxy = new CuttableProxy(gateway.target);
    const watcher = new Client(await proxy.listen(), 'dev');
    const stream = watcher.watchSetup(org.id, ['domain_verification']);
    try {
      const snapshot = await next(stream);
      assert.equal(snapshot.snapshotReason, 'SNAPSHOT_REASON_INITIAL');
      assert.equal(domainState(snapshot), 'SETUP_STATE_IN_PROGRESS');

      // The stream fails with UNAVAILABLE; while the client cannot reconnect, the customer's admin
      // verifies the domain.
      const resumed = next(stream);
      resumed.catch(() => {}); // awaited below, unless an assertion fails first
      proxy.cut();
      const domainId = org.domains[0].id;
      const verify = await gateway.emulator.request(
        'POST',
        `/organization_domains/${domainId}/verify`,
        {},
        { key: true },
      );
      assert.equal(verify.status, 201, verify.text);
      proxy.resume();

      // Resumed with the snapshot's cursor, the stream goes on with what happened since, never
      // with a new initial snapshot. Earlier events may come first, each with the state as the
      // gateway read it (already complete, perhaps): wait for the verification itself, or a
      // resync snapshot showing it.
      const verified = (m) =>
        m.event
          ? m.event.name === 'organization_domain.verified'
          : domainState(m) === 'SETUP_STATE_COMPLETE';
      let message = await resumed;
      while (!verified(message)) {
        assert.notEqual(message.snapshotReason, 'SNAPSHOT_REASON_INITIAL');
        message = await next(stream);
      }
      assert.notEqual(message.snapshotReason, 'SNAPSHOT_REASON_INITIAL');
      assert.ok(message.cursor && message.cursor !== snapshot.cursor);
      assert.equal(domainState(message), 'SETUP_STATE_COMPLETE');
      if (message.event) {
        assert.equal(message.event.objectId, domainId);
      }
    } finally {
      // Closing the channel first ends a pending read, so the generator can return.
      watcher.close();
      proxy.close();
      await stream.return().catch(() => {});
    }
  });
});
