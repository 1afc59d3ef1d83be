// GatewayError: a failed call with its google.rpc details decoded from grpc-status-details-bin.

import { createRequire } from 'node:module';
import path from 'node:path';

import grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const googleProtos = path.dirname(require.resolve('google-proto-files/package.json'));

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => path.join(googleProtos, target);
// keepCase: field names as in the .proto files (the bundled google.protobuf.Any has `type_url`).
root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'], { keepCase: true });
const Status = root.lookupType('google.rpc.Status');
const toObject = { longs: Number, defaults: true };

/** How each detail type fills GatewayError's details. */
const readers = {
  'google.rpc.ErrorInfo': (d, out) => {
    out.reason = d.reason;
    out.metadata = d.metadata;
  },
  'google.rpc.BadRequest': (d, out) => {
    out.fieldViolations.push(
      ...d.field_violations.map((v) => ({ field: v.field, description: v.description })),
    );
  },
  'google.rpc.RetryInfo': (d, out) => {
    out.retryAfterMs = d.retry_delay.seconds * 1000 + d.retry_delay.nanos / 1e6;
  },
  'google.rpc.ResourceInfo': (d, out) => {
    out.resource = { type: d.resource_type, name: d.resource_name };
  },
  'google.rpc.QuotaFailure': (d, out) => {
    out.quotaSubjects.push(...d.violations.map((v) => v.subject));
  },
};

/** @typedef {{ field: string, description: string }} FieldViolation */
/** @typedef {{ type: string, name: string }} Resource */

export class GatewayError extends Error {
  /**
   * @param {number} code a grpc.status value
   * @param {string} message
   * @param {object} [decoded] the google.rpc details
   * @param {string | null} [decoded.reason] ErrorInfo's reason, such as `ORGANIZATION_NOT_FOUND`;
   *   null when the status has no details (as when the client's own deadline passed first)
   * @param {Record<string, string>} [decoded.metadata] ErrorInfo's metadata
   * @param {FieldViolation[]} [decoded.fieldViolations] BadRequest's violations
   * @param {number | null} [decoded.retryAfterMs] RetryInfo's delay
   * @param {Resource | null} [decoded.resource] ResourceInfo
   * @param {string[]} [decoded.quotaSubjects] QuotaFailure's subjects
   */
  constructor(code, message, decoded = {}) {
    const reason = decoded.reason ?? null;
    super(`${grpc.status[code]}: ${reason ? `${reason}: ` : ''}${message}`);
    this.name = 'GatewayError';
    this.code = code;
    this.codeName = grpc.status[code];
    this.details = message;
    this.reason = reason;
    this.metadata = decoded.metadata ?? {};
    this.fieldViolations = decoded.fieldViolations ?? [];
    this.retryAfterMs = decoded.retryAfterMs ?? null;
    this.resource = decoded.resource ?? null;
    this.quotaSubjects = decoded.quotaSubjects ?? [];
  }

  /** The request fields named by BadRequest. */
  get fields() {
    return this.fieldViolations.map((v) => v.field);
  }

  /**
   * Decodes a failed call's status (a grpc-js ServiceError).
   * @param {grpc.ServiceError} error
   * @returns {GatewayError}
   */
  static from(error) {
    if (error instanceof GatewayError) return error;
    const code = error.code ?? grpc.status.UNKNOWN;
    const message = error.details ?? error.message;
    const [bytes] = error.metadata?.get('grpc-status-details-bin') ?? [];
    if (!bytes) return new GatewayError(code, message);
    const details = { metadata: {}, fieldViolations: [], quotaSubjects: [] };
    // google.rpc.Status: details is a list of google.protobuf.Any { type_url, value }.
    const status = Status.toObject(Status.decode(/** @type {Buffer} */ (bytes)), { defaults: true });
    for (const any of status.details) {
      const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
      if (!(name in readers)) continue;
      const type = root.lookupType(name);
      readers[name](type.toObject(type.decode(any.value), toObject), details);
    }
    return new GatewayError(code, message, details);
  }
}
