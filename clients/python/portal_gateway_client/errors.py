"""GatewayError: a failed call with its google.rpc details decoded."""

from __future__ import annotations

from typing import NamedTuple

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class FieldViolation(NamedTuple):
    field: str
    description: str


class Resource(NamedTuple):
    type: str
    name: str


class GatewayError(Exception):
    """A call the gateway (or the channel) failed.

    `reason` is the ErrorInfo reason (such as `ORGANIZATION_NOT_FOUND`); it is None when the
    status carries no details, as when the client's own deadline passed first.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_after: float | None = None,
        resource: Resource | None = None,
        quota_subjects: tuple[str, ...] = (),
    ):
        super().__init__(f"{code.name}: {reason + ': ' if reason else ''}{message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}
        self.field_violations = field_violations
        self.retry_after = retry_after
        self.resource = resource
        self.quota_subjects = quota_subjects

    @property
    def fields(self) -> list[str]:
        """The request fields named by BadRequest."""
        return [v.field for v in self.field_violations]

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> GatewayError:
        """Decodes `grpc-status-details-bin` from a failed call (a grpc.Call)."""
        code, message = error.code(), error.details() or ""
        status = rpc_status.from_call(error)
        if status is None:
            return cls(code, message)
        reason, metadata, violations, retry_after, resource, quota = None, {}, [], None, None, []
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.ToTimedelta().total_seconds()
            elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
                info = error_details_pb2.ResourceInfo()
                detail.Unpack(info)
                resource = Resource(info.resource_type, info.resource_name)
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                failure = error_details_pb2.QuotaFailure()
                detail.Unpack(failure)
                quota += [v.subject for v in failure.violations]
        return cls(
            code,
            message,
            reason=reason,
            metadata=metadata,
            field_violations=tuple(violations),
            retry_after=retry_after,
            resource=resource,
            quota_subjects=tuple(quota),
        )
