"""A thin typed Python client for portal-gateway (adminportal.v1)."""

from .client import Client, IntentLike, Org, intent_value, org_fields, service_config
from .errors import FieldViolation, GatewayError, Resource

__all__ = [
    "Client",
    "FieldViolation",
    "GatewayError",
    "IntentLike",
    "Org",
    "Resource",
    "intent_value",
    "org_fields",
    "service_config",
]
