"""A real S3 API for tests: a ``moto`` server on 127.0.0.1, and a TCP proxy in front of it that can cut connections.

Use it from any test module::

    pytest_plugins = ["s3_server"]  # registers the fixtures ``moto_server`` and ``s3``

    def test_something(s3):
        s3.put("data/a.jsonl", b'{"text": "hi"}\\n')
        read_records(s3.url("data/a.jsonl"), storage_options=s3.storage_options)

The server is started once per session (a thread in this process, free port); every test that takes ``s3`` gets
an emptied server with a fresh bucket, AWS variables pointing at the server (set with ``monkeypatch``, so nothing
leaks into other tests) and s3fs's instance cache cleared afterwards. ``s3.proxy`` drops connections on demand,
so transient network faults are real TCP resets, not mocks.
"""

from __future__ import annotations

import socket
import struct
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

REGION = "us-east-1"
KEY = "testing-key"
SECRET = "testing-secret"


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dropped connection looks to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # wake a thread blocked in recv() on this socket: the RST goes out when its last user lets go
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """A TCP proxy to ``upstream`` that, when armed, resets connections in the middle of a response.

    ``arm(after_bytes, times)``: once ``after_bytes`` more response bytes have passed, the connection carrying
    the next byte is reset; this repeats ``times`` times (counting restarts after each drop). ``drops`` counts
    the connections cut so far.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._after = 0
        self._budget = 0
        self._drops_left = 0
        self.drops = 0
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="s3-fault-proxy")
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, after_bytes: int, times: int = 1) -> None:
        with self._lock:
            self._after = self._budget = after_bytes
            self._drops_left = times

    def disarm(self) -> None:
        with self._lock:
            self._drops_left = 0

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() call
        except OSError:
            pass
        self._listener.close()
        for s in list(self._sockets):
            _reset(s)
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                _reset(client)
                continue
            self._sockets += [client, upstream]
            for src, dst, is_response in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, is_response), daemon=True).start()

    def _cut(self, data: bytes) -> int | None:
        """How many bytes of ``data`` to forward before a reset, or None to forward it all."""
        with self._lock:
            if not self._drops_left:
                return None
            if len(data) <= self._budget:
                self._budget -= len(data)
                return None
            keep = self._budget
            self._drops_left -= 1
            self.drops += 1
            self._budget = self._after
            return keep

    def _pump(self, src: socket.socket, dst: socket.socket, is_response: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                keep = self._cut(data) if is_response else None
                if keep is not None:
                    dst.sendall(data[:keep])
                    _reset(dst)
                    _reset(src)
                    return
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            _reset(dst)
            _reset(src)


@dataclass
class S3:
    """Handle on the test server: a bucket, credentials, and ready-made ``storage_options``."""

    endpoint_url: str
    bucket: str
    proxy: FaultProxy
    region: str = REGION
    key: str = KEY
    secret: str = SECRET
    _client: Any = field(default=None, repr=False)

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for the server (listings not cached, so files put by boto3 show up)."""
        return self._options(self.endpoint_url)

    def faulty_storage_options(self, s3fs_retries: int = 1, **extra: Any) -> dict[str, Any]:
        """s3fs options that go through ``proxy``, with s3fs's own retries cut so that a fault reaches the caller.

        s3fs takes its retry count from an attribute, not an option, so this sets it on the filesystem instance
        that fsspec's instance cache hands to every later user of the same options (cleared after the test).
        """
        import s3fs

        options = {**self._options(self.proxy.endpoint_url), **extra}
        s3fs.S3FileSystem(**options).retries = s3fs_retries
        return options

    @property
    def lance_storage_options(self) -> dict[str, str]:
        """Options in the form Lance (object_store) expects."""
        return {
            "endpoint": self.endpoint_url,
            "aws_access_key_id": self.key,
            "aws_secret_access_key": self.secret,
            "region": self.region,
            "allow_http": "true",
        }

    def _options(self, endpoint: str) -> dict[str, Any]:
        return {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": self.region},
            "use_listings_cache": False,
        }

    def client(self):
        """A boto3 S3 client for the server."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                aws_access_key_id=self.key,
                aws_secret_access_key=self.secret,
            )
        return self._client

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, key: str, data: bytes, bucket: str | None = None) -> str:
        """Upload ``data`` and return its ``s3://`` URL."""
        self.client().put_object(Bucket=bucket or self.bucket, Key=key, Body=data)
        return self.url(key, bucket)

    def url(self, key: str = "", bucket: str | None = None) -> str:
        return f"s3://{bucket or self.bucket}/{key}"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[tuple[str, FaultProxy]]:
    """One moto server thread (127.0.0.1, a free port) and its fault proxy, for the whole session."""
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    proxy = FaultProxy((host, port))
    try:
        yield f"http://{host}:{port}", proxy
    finally:
        proxy.close()
        server.stop()


@pytest.fixture
def s3(moto_server, monkeypatch) -> Iterator[S3]:
    """An emptied server with the bucket ``test-bucket``; AWS variables point at it for this test only."""
    pytest.importorskip("s3fs")
    endpoint, proxy = moto_server
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    proxy.disarm()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    handle = S3(endpoint_url=endpoint, bucket="test-bucket", proxy=proxy)
    handle.create_bucket(handle.bucket)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield handle
    finally:
        proxy.disarm()
        s3fs.S3FileSystem.clear_instance_cache()
