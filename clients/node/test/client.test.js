// The Node client against the real gateway: links, errors with their details, retries.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';

import grpc from '@grpc/grpc-js';

import { Client, GatewayError } from '../src/index.js';
import { startDev, startRestricted } from './gateway.js';

const GENERATE_LINK = 'POST /portal/generate_link';
const CREATE_ORGANIZATION = 'POST /organizations';

const unique = (prefix) => `${prefix}-${randomUUID().slice(0, 12)}`;

/** Resolves to the GatewayError `promise` rejects with. */
async function failure(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GatewayError, `not a GatewayError: ${error}`);
    return error;
  }
  assert.fail('the call succeeded');
}

describe('against portal-gateway dev', () => {
  /** @type {import('./gateway.js').Gateway} */
  let gateway;
  /** @type {Client} */
  let client;

  // One gateway per test, so faults, counts and breakers never leak between tests.
  beforeEach(async () => {
    gateway = await startDev();
    client = new Client(gateway.target, gateway.token);
  });
  afterEach(async () => {
    client.close();
    await gateway.stop();
  });

  test('a minted link opens the portal and is minted for the acting user', async () => {
    const target = gateway.target;
    const admin = new Client(target, 'dev');
    const { organization: acme } = await admin.ensureOrganization('acme', 'Acme Inc');

    // snippet:node-mint-start
    const client = new Client(target, 'dev');
    const link = await client.mintLink('acme', 'sso', { actingUser: 'admin-42', requestId: 'req-42' });
    client.close();
    // snippet:node-mint-end

    assert.ok(link.link.startsWith(`${gateway.emulator.origin}/`));
    assert.equal(link.organizationId, acme.id);
    assert.equal(link.intent, 'INTENT_SSO');
    const expiresInMs = Number(link.expireTime.seconds) * 1000 - Date.now();
    assert.ok(expiresInMs > 4 * 60_000 && expiresInMs <= 5 * 60_000 + 5_000, `expires in ${expiresInMs} ms`);
    const mints = (await gateway.emulator.requests()).recent.filter((r) => r.route === GENERATE_LINK);
    assert.deepEqual(
      mints.map((r) => r.request_id),
      ['req-42'],
    );
    assert.equal((await gateway.emulator.request('GET', link.link)).status, 200);
    // x-acting-user became the link's external_user_id: revoking that user's links cuts it off.
    await admin.call(admin.portal, 'RevokeLinks', { externalId: 'acme', externalUserId: 'admin-42' });
    admin.close();
    assert.equal((await gateway.emulator.request('GET', link.link)).status, 410);
  });

  test('INVALID_ARGUMENT names every bad field, and nothing reaches WorkOS', async () => {
    const error = await failure(client.mintLink('acme', 0, { returnUrl: 'ftp://files.example/' }));
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(error.reason, 'INVALID_ARGUMENT');
    assert.deepEqual(new Set(error.fields), new Set(['intent', 'return_url']));
    assert.equal((await gateway.emulator.requests()).total, 0);
  });

  test('NOT_FOUND carries the resource', async () => {
    const customer = unique('nobody');
    let code, reason, resource;
    // snippet:node-errors-start
    try {
      await client.mintLink(customer, 'sso');
    } catch (error) {
      ({ code, reason, resource } = error); // a GatewayError; also fields, retryAfterMs
    }
    // snippet:node-errors-end
    assert.equal(code, grpc.status.NOT_FOUND);
    assert.equal(reason, 'ORGANIZATION_NOT_FOUND');
    assert.equal(resource?.type, 'organization');
    assert.ok(resource.name.includes(customer), resource.name);
  });

  test('UNAVAILABLE is retried by the service config', async () => {
    const { organization } = await client.ensureOrganization(unique('retry'), 'Retry Inc');
    // Every attempt the gateway makes for the first call fails (dev makes 3), so only a second
    // call, made by the channel's retry policy, can succeed.
    await gateway.emulator.fault(GENERATE_LINK, { status: 503, count: 3 });
    const link = await client.mintLink(organization.id, 'sso');
    assert.equal(link.organizationId, organization.id);
    assert.equal(await gateway.emulator.count(GENERATE_LINK), 4);
    const rpcs = 'portal_gateway_rpc_requests_total';
    assert.equal(await gateway.metric(rpcs, { method: 'GenerateLink', code: 'UNAVAILABLE' }), 1);
    assert.equal(await gateway.metric(rpcs, { method: 'GenerateLink', code: 'OK' }), 1);
  });

  test('without the service config, UNAVAILABLE reaches the caller', async () => {
    const bare = new Client(gateway.target, 'dev', { config: JSON.stringify({ methodConfig: [] }) });
    try {
      const { organization } = await bare.ensureOrganization(unique('retry'), 'Retry Inc');
      await gateway.emulator.fault(GENERATE_LINK, { status: 503, count: 3 });
      const error = await failure(bare.mintLink(organization.id, 'sso'));
      assert.equal(error.code, grpc.status.UNAVAILABLE);
      assert.equal(error.reason, 'WORKOS_UNAVAILABLE');
      assert.ok(error.retryAfterMs > 0, `retryAfterMs ${error.retryAfterMs}`);
      assert.equal(await gateway.emulator.count(GENERATE_LINK), 3);
    } finally {
      bare.close();
    }
  });

  test('DEADLINE_EXCEEDED when WorkOS is slow', async () => {
    const { organization } = await client.ensureOrganization(unique('slow'), 'Slow Inc');
    await gateway.emulator.fault(GENERATE_LINK, { delay_ms: 5000 });
    const started = Date.now();
    const error = await failure(client.mintLink(organization.id, 'sso', { timeoutMs: 500 }));
    assert.equal(error.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 2500, `took ${Date.now() - started} ms`);
    assert.equal(await gateway.emulator.count(GENERATE_LINK), 1);
  });

  test('RESOURCE_EXHAUSTED is retried when RetryInfo says when', async () => {
    const { organization } = await client.ensureOrganization(unique('busy'), 'Busy Inc');
    // WorkOS answers 429 with Retry-After: 1 to all three of the gateway's attempts, so the
    // gateway answers RESOURCE_EXHAUSTED with RetryInfo, and the helper waits and calls again.
    await gateway.emulator.fault(GENERATE_LINK, { status: 429, retry_after: 1, count: 3 });
    const link = await client.mintLink(organization.id, 'sso', { timeoutMs: 10_000 });
    assert.equal(link.organizationId, organization.id);
    assert.equal(await gateway.emulator.count(GENERATE_LINK), 4);
    const rpcs = 'portal_gateway_rpc_requests_total';
    assert.equal(await gateway.metric(rpcs, { method: 'GenerateLink', code: 'RESOURCE_EXHAUSTED' }), 1);
  });

  test('CreateOrganization is retried only with a request id', async () => {
    // The gateway sends a create once (WorkOS would make it twice); the client repeats it.
    await gateway.emulator.fault(CREATE_ORGANIZATION, { status: 503, count: 2 });
    const created = await client.createOrganization('Initech', {
      externalId: unique('initech'),
      requestId: unique('create'),
    });
    assert.equal((await client.getOrganization(created.id)).name, 'Initech');
    assert.equal(await gateway.emulator.count(CREATE_ORGANIZATION), 3);

    await gateway.emulator.fault(CREATE_ORGANIZATION, { status: 503, count: 1 });
    const error = await failure(client.createOrganization('Hooli', { externalId: unique('hooli') }));
    assert.equal(error.code, grpc.status.UNAVAILABLE);
    assert.equal(await gateway.emulator.count(CREATE_ORGANIZATION), 4);
  });
});

describe('against portal-gateway serve with a policy', () => {
  /** @type {import('./gateway.js').Gateway} */
  let restricted;
  before(async () => {
    restricted = await startRestricted();
  });
  after(() => restricted?.stop());

  const denials = [
    { org: 'cust-acme', intent: 'dsync', actingUser: 'admin-42', reason: 'INTENT_NOT_ALLOWED' },
    { org: 'globex', intent: 'sso', actingUser: 'admin-42', reason: 'ORGANIZATION_NOT_ALLOWED' },
    { org: 'cust-acme', intent: 'sso', actingUser: undefined, reason: 'ACTING_USER_REQUIRED' },
  ];
  for (const { org, intent, actingUser, reason } of denials) {
    test(`PERMISSION_DENIED ${reason}`, async () => {
      const client = new Client(restricted.target, restricted.token);
      try {
        // The same caller may mint what its rule allows.
        const allowed = await client.mintLink('cust-acme', 'sso', { actingUser: 'admin-42' });
        assert.ok(allowed.link.startsWith(`${restricted.emulator.origin}/`));
        const mints = await restricted.emulator.count(GENERATE_LINK);
        const error = await failure(client.mintLink(org, intent, { actingUser }));
        assert.equal(error.code, grpc.status.PERMISSION_DENIED);
        assert.equal(error.reason, reason);
        assert.equal(await restricted.emulator.count(GENERATE_LINK), mints);
      } finally {
        client.close();
      }
    });
  }
});
