"""An S3-protocol server for tests: moto's server mode in a process of its own, on a free port of a
given address, with one bucket, stopped again by its PID.

    with s3_server() as s3:               # or the ``s3`` fixture of tests/test_s3.py
        env = {**os.environ, **s3.env}     # what a process needs to reach it (endpoint, credentials)
        uri = s3.uri("sweeps")             # s3://<bucket>/sweeps
        with s3.frozen():                  # unreachable for a while, state kept
            ...

Everything that talks S3 here finds the endpoint in the environment: pyarrow when it opens a URI
(``FileSystem.from_uri``: Ray Tune's storage, search/storage.py; not ``S3FileSystem()`` built by
hand) and boto3 both read ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, so an
``s3://bucket/path`` URI stays a plain URI (no ``?endpoint_override=`` query, which every path
joined onto the experiment would have to carry). A process started with ``s3.env`` (a sweep's
driver, and through it Ray's workers) reaches the same server; so does a Ray node on another
network namespace, given an address of this machine it can route to (``host``).

Moto keeps its state in memory, so stopping and starting the process again would lose the bucket.
An outage is therefore a frozen process (SIGSTOP, then SIGCONT): the port still accepts connections,
but nothing answers, as with an S3 endpoint that hangs; the objects are all there afterwards.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

ACCESS_KEY, SECRET_KEY, REGION = "telesweep-test", "telesweep-test-secret", "us-east-1"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    host: str
    port: int
    bucket: str
    pid: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def client(self):
        """A boto3 S3 client of this server (boto3 comes with moto)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def keys(self, prefix: str = "") -> dict[str, str]:
        """key -> ETag of every object under ``prefix``."""
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
        return out

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    @contextlib.contextmanager
    def frozen(self):
        """The server stopped (SIGSTOP) for the ``with`` block and continued (SIGCONT) after it."""
        os.kill(self.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.pid, signal.SIGCONT)


def _wait_until_up(proc: subprocess.Popen, host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"moto server not listening on {host}:{port} after {timeout} s")


@contextlib.contextmanager
def s3_server(host: str = "127.0.0.1", bucket: str = "telesweep-test", timeout: float = 30.0):
    """Start moto's server on a free port of ``host``, create ``bucket``, yield an :class:`S3Server`;
    stop the process (its PID only) at the end, whatever happened."""
    for attempt in range(3):  # the free port can be taken between free_port() and the server's bind
        port = free_port(host)
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_up(proc, host, port, timeout)
            break
        except RuntimeError:
            _stop(proc)
            if attempt == 2:
                raise
    try:
        endpoint = f"http://{host}:{port}"
        env = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_ENDPOINT_URL": endpoint,
               "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
               # no instance-metadata look-ups (a second's timeout each where there is no EC2)
               "AWS_EC2_METADATA_DISABLED": "true"}
        server = S3Server(host, port, bucket, proc.pid, env)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # a frozen process does not act on SIGTERM
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
