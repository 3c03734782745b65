"""A memory cgroup around Spark's Python workers: the kernel's OOM killer, as an executor container's
memory limit would, SIGKILLs the worker that outgrows it. Needs a writable memory controller
(root, cgroup v1 or a delegated v2 subtree); ``MemoryCgroup.available()`` says why not otherwise."""

from __future__ import annotations

import os
import stat
import sys
import uuid

V1_ROOT = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"


def _own_cgroup() -> tuple[str, str] | None:
    """(version, absolute folder) of this process's memory cgroup, or None."""
    with open("/proc/self/cgroup") as handle:
        lines = [line.rstrip("\n").split(":", 2) for line in handle]
    for _id, controllers, path in lines:
        if "memory" in controllers.split(",") and os.path.isdir(V1_ROOT):
            return "v1", os.path.join(V1_ROOT, path.lstrip("/"))
    for _id, controllers, path in lines:
        if controllers == "" and os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers")):
            return "v2", os.path.join(V2_ROOT, path.lstrip("/"))
    return None


class MemoryCgroup:
    """A child of this process's memory cgroup; processes started by ``python_wrapper`` live in it."""

    def __init__(self, work_dir: str):
        found = _own_cgroup()
        if found is None:
            raise OSError("no memory cgroup controller")
        self.version, parent = found
        self.parent = parent
        self.path = os.path.join(parent, f"fruit-assets-test-{uuid.uuid4().hex[:8]}")
        os.mkdir(self.path)
        if self.version == "v2" and not os.path.exists(os.path.join(self.path, "memory.max")):
            os.rmdir(self.path)
            raise OSError(f"the memory controller is not delegated to {parent}")
        self.python_wrapper = os.path.join(work_dir, "python-in-cgroup")
        with open(self.python_wrapper, "w") as handle:
            # exec: the interpreter keeps the shell's pid, so it (and all it forks) is in the cgroup.
            handle.write(f'#!/bin/sh\necho $$ > "{self.path}/cgroup.procs"\nexec "{sys.executable}" "$@"\n')
        os.chmod(self.python_wrapper, os.stat(self.python_wrapper).st_mode | stat.S_IXUSR)

    @staticmethod
    def available(work_dir: str) -> str | None:
        """None if a cgroup can be made here, else why not."""
        try:
            MemoryCgroup(work_dir).remove()
            return None
        except OSError as error:
            return f"no writable memory cgroup here ({error}); the kill test needs root and cgroup v1 or a delegated v2"

    def _file(self, v1: str, v2: str) -> str:
        return os.path.join(self.path, v1 if self.version == "v1" else v2)

    def usage(self) -> int:
        with open(self._file("memory.usage_in_bytes", "memory.current")) as handle:
            return int(handle.read())

    def peak(self) -> int:
        """The most it has held since it was made (or since ``reset_peak``)."""
        with open(self._file("memory.max_usage_in_bytes", "memory.peak")) as handle:
            return int(handle.read())

    def reset_peak(self) -> None:
        with open(self._file("memory.max_usage_in_bytes", "memory.peak"), "w") as handle:
            handle.write("0")

    def set_limit(self, limit: int | str) -> None:
        with open(self._file("memory.limit_in_bytes", "memory.max"), "w") as handle:
            handle.write(str(limit))

    def oom_kills(self) -> int:
        """Processes the OOM killer has killed in this cgroup (0 where the kernel does not say)."""
        name = self._file("memory.oom_control", "memory.events")
        with open(name) as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def pids(self) -> list[int]:
        with open(os.path.join(self.path, "cgroup.procs")) as handle:
            return [int(line) for line in handle if line.strip()]

    def remove(self) -> None:
        """Moves what still runs in it back to the parent (it lives on, unlimited), then removes it."""
        if not os.path.isdir(self.path):
            return
        if os.path.exists(self._file("memory.limit_in_bytes", "memory.max")):
            try:
                self.set_limit(-1 if self.version == "v1" else "max")
            except OSError:
                pass
        for pid in self.pids():
            try:
                with open(os.path.join(self.parent, "cgroup.procs"), "w") as handle:
                    handle.write(str(pid))
            except OSError:  # gone meanwhile
                pass
        os.rmdir(self.path)
