"""SetupService.WatchSetup through the client's resuming generator.

They are marked `watch`, so a run can leave them out (`-m "not watch"`); they are never
skipped.
"""

from __future__ import annotations

import queue
import socket
import threading
import uuid

import pytest
from adminportal.v1 import portal_pb2, setup_pb2

from portal_gateway_client import Client

pytestmark = pytest.mark.watch

WAIT = 20.0


class CuttableProxy:
    """A TCP proxy to the gateway that can cut every connection and hold new ones until resumed,
    so a stream fails with UNAVAILABLE while the gateway itself keeps running."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(downstream,), daemon=True).start()

    def _connect(self, downstream: socket.socket) -> None:
        self.open.wait()
        upstream = socket.create_connection(self.upstream)
        with self.lock:
            self.sockets += [downstream, upstream]
        for source, sink in ((downstream, upstream), (upstream, downstream)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Closes every connection; new ones wait until `resume`."""
        self.open.clear()
        with self.lock:
            cut, self.sockets = self.sockets, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def resume(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def consume(stream, into: queue.Queue) -> None:
    """Puts each message, then the exception that ended the stream (or None), into `into`."""
    try:
        for message in stream:
            into.put(message)
        into.put(None)
    except Exception as error:  # handed to the test thread, which raises it
        into.put(error)


def next_message(messages: queue.Queue) -> setup_pb2.WatchSetupResponse:
    item = messages.get(timeout=WAIT)
    if isinstance(item, Exception):
        raise item
    assert item is not None, "the stream ended"
    return item


def domain_state(message: setup_pb2.WatchSetupResponse) -> int:
    (status,) = [s for s in message.intents if s.intent == portal_pb2.INTENT_DOMAIN_VERIFICATION]
    return status.state


@pytest.fixture
def acme(client):
    """An organization with one pending domain: (organization, domain id)."""
    org, _ = client.ensure_organization(
        f"watch-{uuid.uuid4().hex[:12]}", "Acme Inc", domains=["acme.example"]
    )
    return org, org.domains[0].id


def test_watch_starts_with_a_snapshot_of_the_organization(client, acme):
    org, _ = acme
    # snippet:python-watch-start
    stream = client.watch_setup(org.id, ["domain_verification"])
    message = next(stream)  # a snapshot, then events; resumes by itself after UNAVAILABLE
    stream.close()
    # snippet:python-watch-end
    assert message.snapshot_reason == setup_pb2.SNAPSHOT_REASON_INITIAL
    assert message.cursor
    assert message.status.organization_id == org.id
    assert domain_state(message) == setup_pb2.SETUP_STATE_IN_PROGRESS


def test_watch_resumes_from_the_last_cursor_after_unavailable(gateway, acme):
    org, domain_id = acme
    proxy = CuttableProxy(gateway.target)
    messages: queue.Queue = queue.Queue()
    try:
        with Client(proxy.target, token="dev") as client:
            stream = client.watch_setup(org.id, ["domain_verification"])
            threading.Thread(target=consume, args=(stream, messages), daemon=True).start()
            snapshot = next_message(messages)
            assert snapshot.snapshot_reason == setup_pb2.SNAPSHOT_REASON_INITIAL
            assert domain_state(snapshot) == setup_pb2.SETUP_STATE_IN_PROGRESS

            # The stream fails with UNAVAILABLE; while the client cannot reconnect, the customer's
            # admin verifies the domain.
            proxy.cut()
            status, body = gateway.emulator.request(
                "POST", f"/organization_domains/{domain_id}/verify", {}, key=True
            )
            assert status == 201, body
            proxy.resume()

            # Resumed with the snapshot's cursor, the stream goes on with what happened since,
            # never with a new initial snapshot. Earlier events may come first, each with the
            # state as the gateway read it (already complete, perhaps): wait for the verification
            # itself, or a resync snapshot showing it.
            def verified(message) -> bool:
                if message.HasField("event"):
                    return message.event.name == "organization_domain.verified"
                return domain_state(message) == setup_pb2.SETUP_STATE_COMPLETE

            message = next_message(messages)
            while not verified(message):
                assert message.snapshot_reason != setup_pb2.SNAPSHOT_REASON_INITIAL
                message = next_message(messages)
            assert message.snapshot_reason != setup_pb2.SNAPSHOT_REASON_INITIAL
            assert message.cursor and message.cursor != snapshot.cursor
            assert domain_state(message) == setup_pb2.SETUP_STATE_COMPLETE
            if message.HasField("event"):
                assert message.event.object_id == domain_id
    finally:
        proxy.close()
