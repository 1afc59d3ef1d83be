// A thin client for portal-gateway: one channel with the shared service config, identity and
// request-id metadata, deadlines, and errors decoded into GatewayError.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { GatewayError } from './errors.js';

export { GatewayError };

const PROTO_ROOT = fileURLToPath(new URL('../../../proto/', import.meta.url));
const SERVICE_CONFIG = new URL('../../service-config.json', import.meta.url);
const WORKOS_ID = /^org_[0-9A-HJKMNP-TV-Z]{26}$/;
// Attempts the helper makes itself: RESOURCE_EXHAUSTED with RetryInfo, and CreateOrganization
// with a requestId on UNAVAILABLE. The service config retries UNAVAILABLE for the rest.
const MAX_ATTEMPTS = 3;
const RESUMABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.ABORTED]);

const definition = protoLoader.loadSync(
  ['organization', 'portal', 'access', 'setup'].map((name) => `adminportal/v1/${name}.proto`),
  { includeDirs: [PROTO_ROOT], longs: String, enums: String, defaults: true, oneofs: true },
);
/** The loaded `adminportal.v1` package: service constructors and message types. */
export const adminportal = /** @type {any} */ (grpc.loadPackageDefinition(definition)).adminportal.v1;

/** @returns {string} the gRPC service config (clients/service-config.json), read in place. */
export function serviceConfig() {
  return readFileSync(SERVICE_CONFIG, 'utf8');
}

/**
 * An organization: a WorkOS id (`org_` and a ULID) or your external id, or explicitly
 * `{ organizationId }` / `{ externalId }`.
 * @typedef {string | { organizationId: string } | { externalId: string }} Org
 */

/**
 * The request's `organization` oneof for `org`.
 * @param {Org} org
 * @returns {{ organizationId: string } | { externalId: string }}
 */
export function orgFields(org) {
  if (typeof org === 'string') return WORKOS_ID.test(org) ? { organizationId: org } : { externalId: org };
  const keys = Object.keys(org);
  if (keys.length !== 1 || !['organizationId', 'externalId'].includes(keys[0])) {
    throw new TypeError(
      `an organization is { organizationId } or { externalId }, got ${JSON.stringify(org)}`,
    );
  }
  return org;
}

/**
 * The `Intent` enum name for `intent`: `'sso'`, `'INTENT_SSO'` or the enum number.
 * @param {string | number} intent
 * @returns {string | number}
 */
export function intentName(intent) {
  if (typeof intent === 'number') return intent;
  const name = intent.toUpperCase();
  return name.startsWith('INTENT_') ? name : `INTENT_${name}`;
}

/**
 * @typedef {object} CallOptions
 * @property {number} [timeoutMs] the deadline, for every attempt together
 * @property {string} [actingUser] sent as `x-acting-user`
 * @property {string} [requestId] sent as `x-request-id` (generated when not given)
 * @property {boolean} [retryUnavailable] retry UNAVAILABLE here (for writes safe to repeat)
 * @property {boolean} [retryUnknown] retry WORKOS_OUTCOME_UNKNOWN too (creates the gateway can
 *   settle by their external id)
 */

export class Client {
  /**
   * @param {string} target such as `127.0.0.1:50051`
   * @param {string} token sent as `authorization: Bearer <token>`
   * @param {object} [options]
   * @param {grpc.ChannelCredentials} [options.credentials] default: plaintext
   * @param {string} [options.config] replaces the shared service config (a JSON string)
   * @param {grpc.ChannelOptions} [options.channelOptions]
   */
  constructor(target, token, { credentials, config, channelOptions } = {}) {
    const options = { 'grpc.service_config': config ?? serviceConfig(), ...channelOptions };
    credentials ??= grpc.credentials.createInsecure();
    this.token = token;
    this.organizations = new adminportal.OrganizationService(target, credentials, options);
    // The other stubs share the first one's channel.
    const shared = { ...options, channelOverride: this.organizations.getChannel() };
    this.portal = new adminportal.PortalService(target, credentials, shared);
    this.access = new adminportal.AccessService(target, credentials, shared);
    this.setup = new adminportal.SetupService(target, credentials, shared);
  }

  close() {
    this.organizations.close();
  }

  /**
   * Identity, `x-request-id` and `x-acting-user` metadata.
   * @param {{ actingUser?: string, requestId?: string }} [options]
   * @returns {grpc.Metadata}
   */
  metadata({ actingUser, requestId } = {}) {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.token}`);
    metadata.set('x-request-id', requestId || randomUUID());
    if (actingUser) metadata.set('x-acting-user', actingUser);
    return metadata;
  }

  /**
   * Calls a unary method (`client.call(client.portal, 'GenerateLink', request)`) within
   * `timeoutMs`, rejecting with GatewayError. RESOURCE_EXHAUSTED is retried when its RetryInfo
   * says when and that fits in the time left (the service config cannot honour RetryInfo);
   * UNAVAILABLE only with `retryUnavailable`. Every attempt carries the same `x-request-id`.
   * @param {grpc.Client} stub
   * @param {string} method
   * @param {object} request
   * @param {CallOptions} [options]
   * @returns {Promise<any>}
   */
  async call(
    stub,
    method,
    request,
    { timeoutMs = 10_000, actingUser, requestId, retryUnavailable = false, retryUnknown = false } = {},
  ) {
    const deadline = Date.now() + timeoutMs;
    const metadata = this.metadata({ actingUser, requestId });
    for (let attempt = 1; ; attempt += 1) {
      let error;
      try {
        return await new Promise((resolve, reject) =>
          stub[method](request, metadata, { deadline }, (e, response) => (e ? reject(e) : resolve(response))),
        );
      } catch (e) {
        error = GatewayError.from(/** @type {grpc.ServiceError} */ (e));
      }
      let wait = null;
      if (error.code === grpc.status.RESOURCE_EXHAUSTED) {
        wait = error.retryAfterMs;
      } else if (
        error.code === grpc.status.UNAVAILABLE &&
        retryUnavailable &&
        // The change may have been made: only a create the gateway can look up (by its
        // external id) is sent again; otherwise the caller looks first.
        (retryUnknown || error.reason !== 'WORKOS_OUTCOME_UNKNOWN')
      ) {
        wait = error.retryAfterMs ?? 200 * 2 ** (attempt - 1);
      }
      if (wait === null || attempt === MAX_ATTEMPTS || Date.now() + wait >= deadline) throw error;
      await sleep(wait);
    }
  }

  /**
   * Mints an Admin Portal link. The link is a credential: hand it over, never log it.
   * @param {Org} org
   * @param {string | number} intent
   * @param {CallOptions & { returnUrl?: string, successUrl?: string, externalUserId?: string }} [options]
   * @returns {Promise<{ link: string, expireTime: { seconds: string, nanos: number }, organizationId: string, intent: string }>}
   */
  async mintLink(org, intent, { returnUrl = '', successUrl = '', externalUserId = '', ...options } = {}) {
    const request = { ...orgFields(org), intent: intentName(intent), returnUrl, successUrl, externalUserId };
    const response = await this.call(this.portal, 'GenerateLink', request, options);
    return response.portalLink;
  }

  /**
   * Gets or creates the organization with `externalId`.
   * @param {string} externalId
   * @param {string} name
   * @param {CallOptions & { domains?: string[] }} [options] domains are claimed pending verification
   * @returns {Promise<{ organization: any, created: boolean }>}
   */
  async ensureOrganization(externalId, name, { domains = [], ...options } = {}) {
    const request = { externalId, name, domains: domains.map((domain) => ({ domain })) };
    return this.call(this.organizations, 'EnsureOrganization', request, options);
  }

  /**
   * Creates an organization. Retried on UNAVAILABLE only when `requestId` is set: the gateway
   * answers a repeat with the first call's answer, and settles a create whose answer was lost
   * before making another, so a repeat cannot create a second one.
   * @param {string} name
   * @param {{ externalId?: string, requestId?: string, timeoutMs?: number }} [options]
   */
  async createOrganization(name, { externalId = '', requestId = '', timeoutMs } = {}) {
    const request = { name, externalId, requestId };
    const options = {
      timeoutMs,
      retryUnavailable: Boolean(requestId),
      retryUnknown: Boolean(requestId && externalId),
    };
    return (await this.call(this.organizations, 'CreateOrganization', request, options)).organization;
  }

  /**
   * @param {Org} org
   * @param {CallOptions} [options]
   */
  async getOrganization(org, options = {}) {
    const fields = orgFields(org);
    // GetOrganizationRequest names the WorkOS id `id`.
    const request = 'organizationId' in fields ? { id: fields.organizationId } : fields;
    return (await this.call(this.organizations, 'GetOrganization', request, { timeoutMs: 5_000, ...options }))
      .organization;
  }

  /**
   * Yields setup events (and snapshots) for `org`, resuming from the last cursor received after
   * UNAVAILABLE or ABORTED. Gives up, throwing GatewayError, after `maxFailures` failed attempts
   * in a row; any other error is thrown at once. Breaking out of the loop cancels the stream.
   * @param {Org} org
   * @param {Array<string | number>} [intents] empty means all seven
   * @param {string} [cursor] resume after this cursor
   * @param {{ maxFailures?: number }} [options]
   * @returns {AsyncGenerator<any>}
   */
  async *watchSetup(org, intents = [], cursor = '', { maxFailures = 5 } = {}) {
    const request = { ...orgFields(org), intents: intents.map(intentName) };
    for (let failures = 0; ;) {
      const stream = this.setup.WatchSetup({ ...request, resumeCursor: cursor }, this.metadata());
      // Errors reach the loop below; this keeps the CANCELLED that follows cancel() from being
      // an unhandled 'error' event.
      stream.on('error', () => {});
      let error;
      try {
        for await (const message of stream) {
          failures = 0;
          cursor = message.cursor;
          yield message;
        }
        return;
      } catch (e) {
        error = GatewayError.from(/** @type {grpc.ServiceError} */ (e));
      } finally {
        stream.cancel();
      }
      failures += 1;
      if (!RESUMABLE.has(error.code) || failures >= maxFailures) throw error;
      await sleep(error.retryAfterMs ?? 100 * 2 ** failures);
    }
  }
}
