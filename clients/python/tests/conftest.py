"""Fixtures that run the real portal-gateway binary (from PORTAL_GATEWAY_BIN) on port 0.

`gateway` is `portal-gateway dev` (the gateway and its embedded WorkOS emulator, identity
`Bearer dev`); `restricted` is `portal-gateway serve` with a policy, in front of a standalone
`portal-gateway emulator`, for calls the policy refuses.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from portal_gateway_client import Client

STARTUP_TIMEOUT = 30.0
RESTRICTED_TOKEN = "billing-token"
RESTRICTED_API_KEY = "sk_test_client_suites"


def binary() -> str:
    path = os.environ.get("PORTAL_GATEWAY_BIN")
    if not path:
        pytest.exit("set PORTAL_GATEWAY_BIN to the portal-gateway binary", returncode=2)
    return path


class Process:
    """A started portal-gateway process whose stdout (addresses, then audit lines) is drained."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [binary(), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, **patterns: str) -> dict[str, str]:
        """Reads stdout until each pattern has matched a line; returns each one's first group."""
        found: dict[str, str] = {}
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while len(found) < len(patterns):
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                self.stderr.seek(0)
                raise RuntimeError(
                    f"portal-gateway did not print {sorted(set(patterns) - set(found))}: "
                    + self.stderr.read().decode(errors="replace")[-2000:]
                )
            for name, pattern in patterns.items():
                match = re.search(pattern, line)
                if match and name not in found:
                    found[name] = match.group(1)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


@dataclass
class Emulator:
    """The WorkOS emulator: its WorkOS API (with the key) and its control API."""

    origin: str
    api_key: str

    def request(self, method: str, path_or_url: str, body: dict | None = None, key: bool = False):
        """Returns (HTTP status, body text)."""
        url = path_or_url if path_or_url.startswith("http") else self.origin + path_or_url
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def control(self, method: str, path: str, body: dict | None = None) -> dict:
        status, text = self.request(method, f"/_emulator/{path}", body)
        assert status in (200, 201), f"{method} /_emulator/{path}: {status} {text}"
        return json.loads(text)

    def fault(self, route: str, **fields) -> None:
        self.control("POST", "faults", {"route": route, **fields})

    def requests(self) -> dict:
        return self.control("GET", "requests")

    def count(self, route: str) -> int:
        return self.requests()["counts"].get(route, 0)


@dataclass
class Gateway:
    target: str
    token: str
    emulator: Emulator
    admin: str | None = None

    def metric(self, name: str, **labels: str) -> float:
        """A series' value from /metrics (0 when absent)."""
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series.startswith(name + "{") and all(f'{k}="{v}"' in series for k, v in labels.items()):
                return float(value)
        return 0.0


def wait_until_serving(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=STARTUP_TIMEOUT, wait_for_ready=True
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def gateway():
    """`portal-gateway dev` on port 0, one per test so faults, counts and breakers never leak."""
    process = Process(
        [
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--emulator-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]
    )
    try:
        found = process.wait_for(
            emulator=r"WorkOS emulator listening on (http://\S+)",
            api_key=r"\(API key (\S+)\)",
            target=r"portal-gateway listening on (\S+)",
            admin=r"Metrics on http://([^/\s]+)/metrics",
        )
        wait_until_serving(found["target"])
        emulator = Emulator(found["emulator"], found["api_key"])
        yield Gateway(found["target"], "dev", emulator, found["admin"])
    finally:
        process.stop()


@pytest.fixture
def client(gateway):
    with Client(gateway.target, token=gateway.token) as client:
        yield client


RESTRICTED_CONFIG = """
listen = "127.0.0.1:0"

[server]
drain_delay = "10ms"

[portal]
allow_http_loopback = true

[auth]
tokens = [{{ identity = "billing", sha256 = "{digest}" }}]

[[policy.callers]]
name = "billing"
identities = ["token:billing"]
rpcs = ["GenerateLink"]
intents = ["sso"]
organizations = ["external:cust-*"]
return_origins = ["http://localhost:3000/settings"]
require_acting_user = true
"""


@pytest.fixture(scope="module")
def restricted(tmp_path_factory):
    """`portal-gateway serve` whose only caller, `billing` (its token is `restricted.token`), may
    mint SSO links for organizations with external ids `cust-*`, naming an acting user. The
    emulator holds the organizations `cust-acme` and `globex`."""
    emulator = Process(["emulator", "--listen", "127.0.0.1:0", "--api-key", RESTRICTED_API_KEY])
    gateway = None
    try:
        origin = emulator.wait_for(origin=r"WorkOS emulator listening on (http://\S+)")["origin"]
        config = tmp_path_factory.mktemp("restricted") / "config.toml"
        digest = hashlib.sha256(RESTRICTED_TOKEN.encode()).hexdigest()
        config.write_text(RESTRICTED_CONFIG.format(digest=digest))
        gateway = Process(
            ["serve", "--config", str(config)],
            env={"WORKOS_API_KEY": RESTRICTED_API_KEY, "WORKOS_BASE_URL": origin},
        )
        target = gateway.wait_for(target=r"portal-gateway listening on (\S+)")["target"]
        wait_until_serving(target)
        emulator_api = Emulator(origin, RESTRICTED_API_KEY)
        seed = [{"name": "Acme Inc", "external_id": "cust-acme"}, {"name": "Globex", "external_id": "globex"}]
        emulator_api.control("POST", "seed", {"organizations": seed})
        yield Gateway(target, RESTRICTED_TOKEN, emulator_api)
    finally:
        if gateway is not None:
            gateway.stop()
        emulator.stop()
