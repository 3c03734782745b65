"""A real Spark standalone cluster from the pip package: one master, N workers, on 127.0.0.1, with
Spark authentication and network encryption on (a secret made up per cluster)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from fruit_assets.spark_jobs.network_security import AUTH_FILE_VARIABLE, NETWORK_SECURITY_CONF, SHARED_KEY_SETTING

# Loopback only: never through a proxy from the environment (or one a test left installed).
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


def _write_private(path: str, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


class SparkStandalone:
    """``authenticate``: the master and workers require Spark authentication and AES encryption with
    a secret written (0600) to ``secret_file``; a driver joins with FRUIT_SPARK_AUTH_SECRET_FILE
    set to it (``driver_env``), a worker started elsewhere with ``daemon_java_opts``."""

    def __init__(self, work_dir: str, workers: int = 2, cores: int = 1, memory: str = "2g",
                 authenticate: bool = True):
        self.work_dir = work_dir
        self.worker_count, self.cores, self.memory = workers, cores, memory
        self.port, self.ui_port = _free_port(), _free_port()
        self.master_url = f"spark://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SPARK_HOME": spark_home(), "SPARK_LOCAL_IP": "127.0.0.1",
                    "PYSPARK_PYTHON": sys.executable, "SPARK_NO_DAEMONIZE": "1"}
        self.authenticate = authenticate
        self.secret_file = os.path.join(work_dir, "spark-auth-secret") if authenticate else ""
        # The daemons read it with --properties-file: the secret stays off their command lines.
        self.daemon_properties_file = os.path.join(work_dir, "spark-daemons.conf")
        self.master = None
        self.workers: list[subprocess.Popen | None] = []

    @property
    def driver_env(self) -> dict[str, str]:
        return {AUTH_FILE_VARIABLE: self.secret_file} if self.authenticate else {}

    def daemon_conf(self) -> dict[str, str]:
        if not self.authenticate:
            return {}
        with open(self.secret_file) as handle:
            return {**NETWORK_SECURITY_CONF, SHARED_KEY_SETTING: handle.read().strip()}

    @property
    def daemon_java_opts(self) -> str:
        """For SPARK_WORKER_OPTS of a worker started elsewhere (a container): it then joins this master."""
        return " ".join(f"-D{key}={value}" for key, value in self.daemon_conf().items())

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(os.path.join(self.work_dir, f"{name}.log"), "ab")
        return subprocess.Popen(
            [os.path.join(spark_home(), "bin", "spark-class"), *args, "--properties-file", self.daemon_properties_file],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def start(self) -> "SparkStandalone":
        if self.authenticate:
            _write_private(self.secret_file, secrets.token_hex(32))
        _write_private(self.daemon_properties_file, "".join(f"{k} {v}\n" for k, v in self.daemon_conf().items()))
        self.master = self._spawn("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                  "--port", str(self.port), "--webui-port", str(self.ui_port))
        for index in range(self.worker_count):
            self.workers.append(self._start_worker(index))
        self.wait_for_workers(self.worker_count)
        return self

    def _start_worker(self, index: int) -> subprocess.Popen:
        work = os.path.join(self.work_dir, f"worker-{index}")
        os.makedirs(work, exist_ok=True)
        return self._spawn(f"worker-{index}", "org.apache.spark.deploy.worker.Worker", self.master_url,
                           "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                           "--webui-port", str(_free_port()), "--work-dir", work)

    def _ui_port(self) -> int:
        """The port the master UI really bound (Spark moves to the next one if ours was taken)."""
        import re

        with open(os.path.join(self.work_dir, "master.log"), errors="replace") as handle:
            found = re.findall(r"Successfully started service 'MasterUI' on port (\d+)", handle.read())
        return int(found[-1]) if found else self.ui_port

    def master_state(self) -> dict:
        """The master's JSON (workers, running and completed applications); {} while it starts."""
        import json

        try:
            with LOOPBACK.open(f"http://127.0.0.1:{self._ui_port()}/json/", timeout=5) as response:
                return json.load(response)
        except OSError:
            return {}

    def alive_workers(self) -> int:
        return sum(1 for worker in self.master_state().get("workers", []) if worker.get("state") == "ALIVE")

    def wait_for_workers(self, count: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while (alive := self.alive_workers()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{alive} of {count} Spark workers alive on the master UI "
                                   f"(port {self._ui_port()}); see logs in {self.work_dir}")
            time.sleep(0.5)

    def kill_worker(self, index: int) -> None:
        """SIGKILL the worker and everything it started (executor JVM, Python workers)."""
        process = self.workers[index]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.workers[index] = None

    def restart_worker(self, index: int) -> None:
        self.workers[index] = self._start_worker(index)
        self.wait_for_workers(self.worker_count)

    def stop(self) -> None:
        for process in [*self.workers, self.master]:
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
