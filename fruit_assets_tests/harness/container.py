"""The container image as the tests build and run it: docker/build-local.sh, then podman with the
repository's containers.conf, containers on the host network (they reach the test S3 server, the
Spark master and the Dagster instance on 127.0.0.1 as pods reach theirs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass

from fruit_assets_tests.harness import REPO

IMAGE = "fruit-assets:dev"
# Build-arg for the tests: no internet for ImageNet here, so the image bakes the seeded random weights.
TEST_WEIGHTS = "random"


def podman_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.path.join(REPO, "docker", "podman", "containers.conf"), **(extra or {})}


def podman(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``podman ARGS``; a non-zero exit raises with the end of its output."""
    result = subprocess.run(["podman", *args], env=podman_env(env), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                           f"{(result.stdout + result.stderr)[-4000:]}")
    return result


def missing_tools() -> list[str]:
    return [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    build_seconds: float
    size_bytes: int

    def summary(self) -> str:
        return (f"container image {self.name}: built from a clean state (--no-cache) in {self.build_seconds:.0f} s, "
                f"{self.size_bytes / 1e9:.2f} GB")


def build_image(log_path: str) -> BuiltImage:
    """docker/build-local.sh with no layer cache: every step runs as on a fresh machine (the local
    base image is made once per machine and reused, as the script does)."""
    started = time.monotonic()
    with open(log_path, "w") as log:
        result = subprocess.run(
            [os.path.join(REPO, "docker", "build-local.sh"), "--no-cache", "--build-arg", f"MODEL_WEIGHTS={TEST_WEIGHTS}"],
            env=podman_env({"FRUIT_IMAGE": IMAGE}), stdout=log, stderr=subprocess.STDOUT, timeout=1800,
        )
    if result.returncode != 0:
        with open(log_path) as log:
            raise RuntimeError(f"docker/build-local.sh exited {result.returncode}:\n{log.read()[-6000:]}")
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    return BuiltImage(IMAGE, time.monotonic() - started, size)


# The variables a container gets from the test's own environment by name (`-e NAME`): values, the
# S3 and Postgres secrets and the Spark cluster's (in SPARK_WORKER_OPTS) included, never appear on a
# command line.
INHERITED_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                       "DAGSTER_PG_PASSWORD", "SPARK_WORKER_OPTS")


def run_args(env: dict[str, str], network: str = "host") -> list[str]:
    args = ["--network", network]
    for name in INHERITED_VARIABLES:
        if name in os.environ:
            args += ["-e", name]
    for name, value in env.items():
        args += ["-e", f"{name}={value}"]
    return args


def run(image: str, command: list[str], env: dict[str, str] | None = None, network: str = "host",
        timeout: float = 900) -> subprocess.CompletedProcess:
    """A container to completion (removed after); returns its exit status and output, unchecked."""
    return subprocess.run(["podman", "run", "--rm", *run_args(env or {}, network), image, *command],
                          env=podman_env(), capture_output=True, text=True, timeout=timeout)


class Container:
    """A long-running container (``podman run -d``), removed on exit. ``env_by_name``: variables
    handed over by name, their values never on podman's command line (a pod's secrets)."""

    def __init__(self, image: str, command: list[str], env: dict[str, str] | None = None,
                 options: list[str] | None = None, env_by_name: dict[str, str] | None = None):
        self.name = f"fruit-assets-test-{uuid.uuid4().hex[:8]}"
        self.env_by_name = dict(env_by_name or {})
        by_name = [arg for name in self.env_by_name for arg in ("-e", name)]
        self.args = ["run", "-d", "--name", self.name, *run_args(env or {}), *by_name, *(options or []), image, *command]

    def __enter__(self) -> "Container":
        podman(*self.args, env=self.env_by_name)
        return self

    def wait(self, timeout: float) -> int:
        """The container's exit status once it has stopped."""
        return int(podman("wait", self.name, timeout=timeout).stdout.strip().splitlines()[-1])

    def __exit__(self, *exc) -> None:
        subprocess.run(["podman", "rm", "-f", "-t", "5", self.name], env=podman_env(), capture_output=True, timeout=120)

    def logs(self) -> str:
        result = podman("logs", self.name)
        return result.stdout + result.stderr

    def running(self) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def exec(self, *command: str) -> str:
        return podman("exec", self.name, *command).stdout
