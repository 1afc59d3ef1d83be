"""A thin typed client for portal-gateway: one channel with the shared service config, identity
and request-id metadata, deadlines, and errors decoded into GatewayError."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import TypeVar

import grpc
from adminportal.v1 import (
    access_pb2_grpc,
    organization_pb2,
    organization_pb2_grpc,
    portal_pb2,
    portal_pb2_grpc,
    setup_pb2,
    setup_pb2_grpc,
)

from .errors import GatewayError

Response = TypeVar("Response")

#: An organization: a WorkOS id (`org_` and a ULID) or your external id, or explicitly
#: `{"organization_id": ...}` / `{"external_id": ...}`.
Org = str | Mapping[str, str]
#: An intent: `"sso"`, `"INTENT_SSO"` or `portal_pb2.INTENT_SSO`.
IntentLike = str | int

_WORKOS_ID = re.compile(r"org_[0-9A-HJKMNP-TV-Z]{26}")
_ORG_FIELDS = ("organization_id", "external_id")
# Attempts the helper makes itself: RESOURCE_EXHAUSTED with RetryInfo, and CreateOrganization
# with a request_id on UNAVAILABLE. The service config retries UNAVAILABLE for the rest.
_MAX_ATTEMPTS = 3
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)


def service_config() -> str:
    """The gRPC service config: clients/service-config.json, bundled when the package is built
    (read in place when the package is imported from the repository)."""
    bundled = resources.files(__package__).joinpath("service-config.json")
    if bundled.is_file():
        return bundled.read_text()
    return (Path(__file__).resolve().parents[2] / "service-config.json").read_text()


def org_fields(org: Org) -> dict[str, str]:
    """The request's `organization` oneof for `org`."""
    if isinstance(org, str):
        return {"organization_id" if _WORKOS_ID.fullmatch(org) else "external_id": org}
    if len(org) != 1 or next(iter(org)) not in _ORG_FIELDS:
        raise ValueError(f"an organization is one of {_ORG_FIELDS}, got {dict(org)}")
    return dict(org)


def intent_value(intent: IntentLike) -> int:
    """The `Intent` enum value for `intent`."""
    if isinstance(intent, int):
        return intent
    name = intent.upper()
    return portal_pb2.Intent.Value(name if name.startswith("INTENT_") else f"INTENT_{name}")


class Client:
    """A portal-gateway client. `token` is sent as `authorization: Bearer <token>`; `config`
    replaces the shared service config (a JSON string); `options` are more channel options."""

    def __init__(
        self,
        target: str,
        token: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        config: str | None = None,
        options: Iterable[tuple[str, object]] = (),
    ):
        config = service_config() if config is None else config
        options = [("grpc.service_config", config), ("grpc.enable_retries", 1), *options]
        if credentials is None:
            self.channel = grpc.insecure_channel(target, options)
        else:
            self.channel = grpc.secure_channel(target, credentials, options)
        self._token = token
        self.organizations = organization_pb2_grpc.OrganizationServiceStub(self.channel)
        self.portal = portal_pb2_grpc.PortalServiceStub(self.channel)
        self.access = access_pb2_grpc.AccessServiceStub(self.channel)
        self.setup = setup_pb2_grpc.SetupServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def metadata(
        self, acting_user: str | None = None, request_id: str | None = None
    ) -> list[tuple[str, str]]:
        """Identity, `x-request-id` (generated when not given) and `x-acting-user` metadata."""
        metadata = [
            ("authorization", f"Bearer {self._token}"),
            ("x-request-id", request_id or uuid.uuid4().hex),
        ]
        if acting_user:
            metadata.append(("x-acting-user", acting_user))
        return metadata

    def call(
        self,
        method: Callable[..., Response],
        request: object,
        *,
        timeout: float = 10.0,
        acting_user: str | None = None,
        request_id: str | None = None,
        retry_unavailable: bool = False,
        retry_unknown: bool = False,
    ) -> Response:
        """Calls a unary stub method within `timeout` seconds, raising GatewayError.

        RESOURCE_EXHAUSTED is retried when its RetryInfo says when and that fits in the time left
        (the service config cannot honour RetryInfo); UNAVAILABLE only with `retry_unavailable`,
        for writes that are safe to repeat, and WORKOS_OUTCOME_UNKNOWN only with `retry_unknown`. Every attempt carries the same `x-request-id`.
        """
        deadline = time.monotonic() + timeout
        metadata = self.metadata(acting_user, request_id)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            try:
                return method(request, timeout=max(deadline - time.monotonic(), 0.0), metadata=metadata)
            except grpc.RpcError as rpc_error:
                error = GatewayError.from_rpc_error(rpc_error)
            if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                wait = error.retry_after
            elif (
                error.code == grpc.StatusCode.UNAVAILABLE
                and retry_unavailable
                # The change may have been made: only a create the gateway can look up (by its
                # external id) is sent again; otherwise the caller looks first.
                and (retry_unknown or error.reason != "WORKOS_OUTCOME_UNKNOWN")
            ):
                wait = error.retry_after if error.retry_after is not None else 0.2 * 2 ** (attempt - 1)
            else:
                wait = None
            if wait is None or attempt == _MAX_ATTEMPTS or time.monotonic() + wait >= deadline:
                raise error
            time.sleep(wait)
        raise AssertionError("unreachable")

    def mint_link(
        self,
        org: Org,
        intent: IntentLike,
        *,
        acting_user: str | None = None,
        return_url: str = "",
        success_url: str = "",
        external_user_id: str = "",
        timeout: float = 10.0,
        request_id: str | None = None,
    ) -> portal_pb2.PortalLink:
        """Mints an Admin Portal link. The link is a credential: hand it over, never log it."""
        request = portal_pb2.GenerateLinkRequest(
            intent=intent_value(intent),
            return_url=return_url,
            success_url=success_url,
            external_user_id=external_user_id,
            **org_fields(org),
        )
        response = self.call(
            self.portal.GenerateLink,
            request,
            timeout=timeout,
            acting_user=acting_user,
            request_id=request_id,
        )
        return response.portal_link

    def ensure_organization(
        self, external_id: str, name: str, *, domains: Iterable[str] = (), timeout: float = 10.0
    ) -> tuple[organization_pb2.Organization, bool]:
        """Gets or creates the organization with `external_id`; returns it and whether it was created."""
        request = organization_pb2.EnsureOrganizationRequest(
            external_id=external_id,
            name=name,
            domains=[organization_pb2.OrganizationDomain(domain=d) for d in domains],
        )
        response = self.call(self.organizations.EnsureOrganization, request, timeout=timeout)
        return response.organization, response.created

    def create_organization(
        self,
        name: str,
        *,
        external_id: str = "",
        request_id: str = "",
        timeout: float = 10.0,
    ) -> organization_pb2.Organization:
        """Creates an organization. Retried on UNAVAILABLE only when `request_id` is set: the
        gateway answers a repeat with the first call's answer, and settles a create whose answer
        was lost before making another, so a repeat cannot create a second one."""
        request = organization_pb2.CreateOrganizationRequest(
            name=name, external_id=external_id, request_id=request_id
        )
        response = self.call(
            self.organizations.CreateOrganization,
            request,
            timeout=timeout,
            retry_unavailable=bool(request_id),
            retry_unknown=bool(request_id and external_id),
        )
        return response.organization

    def get_organization(self, org: Org, *, timeout: float = 5.0) -> organization_pb2.Organization:
        fields = org_fields(org)
        if "organization_id" in fields:  # GetOrganizationRequest names it `id`
            fields = {"id": fields["organization_id"]}
        request = organization_pb2.GetOrganizationRequest(**fields)
        return self.call(self.organizations.GetOrganization, request, timeout=timeout).organization

    def watch_setup(
        self,
        org: Org,
        intents: Iterable[IntentLike] = (),
        cursor: str | None = None,
        *,
        max_failures: int = 5,
    ) -> Iterator[setup_pb2.WatchSetupResponse]:
        """Yields setup events (and snapshots) for `org`, resuming from the last cursor received
        after UNAVAILABLE or ABORTED. Gives up, raising GatewayError, after `max_failures` failed
        attempts in a row; any other error is raised at once."""
        intents = [intent_value(i) for i in intents]
        failures = 0
        while True:
            request = setup_pb2.WatchSetupRequest(
                intents=intents, resume_cursor=cursor or "", **org_fields(org)
            )
            stream = self.setup.WatchSetup(request, metadata=self.metadata())
            try:
                for message in stream:
                    failures = 0
                    cursor = message.cursor
                    yield message
                return
            except grpc.RpcError as rpc_error:
                error = GatewayError.from_rpc_error(rpc_error)
                failures += 1
                if error.code not in _RESUMABLE or failures >= max_failures:
                    raise error from None
            finally:
                stream.cancel()
            time.sleep(error.retry_after if error.retry_after is not None else 0.1 * 2**failures)
