"""A real PostgreSQL server (Debian's packages) on 127.0.0.1, for a Dagster instance shared by
processes on the host and in containers, as the Helm chart's webserver, daemon and run pods share
theirs. Password authentication with a password made up per session; data in a throw-away folder."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile

from fruit_assets_tests.harness.dagster_dev import free_port


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


class PostgresServer:
    """``with PostgresServer() as pg:``; ``pg.instance_storage(...)`` is the dagster.yaml block."""

    user = "dagster"
    database = "dagster"
    login_env = "DAGSTER_PG_PASSWORD"

    def __init__(self):
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: `bash .ci/run` installs it (apt-get install postgresql)")
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.data = None
        # postgres refuses to run as root: as root, run it as the packages' `postgres` user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str, env: dict[str, str] | None = None) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120,
                                env={**os.environ, **(env or {})})
        if result.returncode != 0:
            raise RuntimeError(f"{os.path.basename(args[0])} failed: {(result.stdout + result.stderr)[-2000:]}")

    def __enter__(self) -> "PostgresServer":
        # Under /tmp, not pytest's 0700 folders: the `postgres` user must reach it.
        self.data = tempfile.mkdtemp(prefix="fruit-assets-pg-")
        password_file = os.path.join(self.data, "password")
        with open(password_file, "w") as handle:
            handle.write(self.password)
        if self.as_user:
            shutil.chown(self.data, "postgres", "postgres")
            shutil.chown(password_file, "postgres", "postgres")
        os.chmod(password_file, 0o600)
        cluster = os.path.join(self.data, "cluster")
        self._run(f"{self.bin}/initdb", "-D", cluster, "-U", self.user, f"--pwfile={password_file}",
                  "--auth=scram-sha-256", "-E", "UTF8")
        os.remove(password_file)
        self._run(f"{self.bin}/pg_ctl", "-D", cluster, "-l", os.path.join(self.data, "server.log"), "-w",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}", "start")
        self._run(f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database,
                  env={"PGPASSWORD": self.password})
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._run(f"{self.bin}/pg_ctl", "-D", os.path.join(self.data, "cluster"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.data, ignore_errors=True)

    def instance_storage(self) -> str:
        """dagster.yaml's storage block; the password comes from the environment, never the file."""
        return (
            "storage:\n  postgres:\n    postgres_db:\n"
            f"      username: {self.user}\n      password:\n        env: {self.login_env}\n"
            f"      hostname: 127.0.0.1\n      db_name: {self.database}\n      port: {self.port}\n"
        )
