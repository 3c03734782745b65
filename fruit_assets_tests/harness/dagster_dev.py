"""A real `dagster dev` (webserver + daemon) on a free loopback port, owned by the test session."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from fruit_assets_tests.harness import REPO

# Loopback only: never through a proxy from the environment (or one a test left installed).
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DagsterDev:
    """``workspace``/``webserver_only``: the code-server test's host side, a bare dagster-webserver
    (no daemon: the caller's dagster.yaml launches runs at once) over a workspace with a
    grpc_server entry."""

    def __init__(self, home: str, env: dict[str, str], workspace: str = "workspace.yaml",
                 webserver_only: bool = False):
        self.home = home
        self.workspace, self.webserver_only = workspace, webserver_only
        self.env = {**os.environ, **env, "DAGSTER_HOME": home}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def cli(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([f"{BIN}/dagster", *args], env=self.env, cwd=REPO,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"dagster {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result

    def start(self, timeout: float = 300, via_cli: bool = False) -> "DagsterDev":
        """``via_cli``: start it as users do, ``fruit-assets ui`` (which sets up DAGSTER_HOME
        itself); else ``dagster dev -w workspace.yaml`` with the repository's dagster.yaml."""
        if via_cli:
            command = [f"{BIN}/fruit-assets", "ui", "--host", "127.0.0.1", "--port", str(self.port)]
        elif self.webserver_only:
            command = [f"{BIN}/dagster-webserver", "-w", self.workspace, "-h", "127.0.0.1", "-p", str(self.port)]
        else:
            shutil.copy(os.path.join(REPO, "dagster.yaml"), os.path.join(self.home, "dagster.yaml"))
            command = [f"{BIN}/dagster", "dev", "-w", self.workspace, "-h", "127.0.0.1", "-p", str(self.port)]
        self.log = open(os.path.join(self.home, "dagster_dev.log"), "wb")
        # `dagster dev` started from a non-interactive shell ignores SIGINT/SIGTERM unless their
        # default handlers are restored; its own process group lets us stop all of it.
        self.process = subprocess.Popen(
            ["env", "--default-signal=INT,TERM", *command],
            env=self.env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name "
                                    "locationOrLoadError { __typename } } } } }")
                entries = data["workspaceOrError"]["locationEntries"]
                loaded = entries and entries[0]["locationOrLoadError"]
                if loaded and loaded["__typename"] == "RepositoryLocation":
                    return self
                last = f"code location not loaded yet: {entries}"
            except OSError as error:
                last = f"{type(error).__name__}: {error}"
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dagster dev did not come up ({last}); see {self.home}/dagster_dev.log")
            time.sleep(0.5)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with LOOPBACK.open(request, timeout=30) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise RuntimeError(payload["errors"])
        return payload["data"]

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        self.process = None
