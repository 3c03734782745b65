"""A class-data-sharing archive of the driver JVM's classes (the JDK's dynamic AppCDS), so a Spark
start maps Spark's classes from one file instead of loading and verifying them one by one.

Measured here (2-core Sapphire Rapids, 2026-12-03): a SparkSession started in 4.9 s without the
archive and 3.0 s with it; `fruit-assets materialize` pays that start on every command, and a run
pod on Kubernetes on every run. No Dagster.

The archive is recorded by a JVM started with ``-XX:ArchiveClassesAtExit``: it writes the classes it
loaded when it exits (about 6 s, 120 MB), so the JVM that records is shut down and waited for by
``finish_recording``, the file written under a temporary name and renamed only after the JVM
exited cleanly: the JVM crashes (SIGBUS) on a truncated archive, so a partial file must never
carry the final name. The final name carries the file's size, checked before use, and the key of
what the archive depends on (the JVM, the jars); a JVM that still refuses to start with it (an
archive from another build that passes those checks) gets it removed and starts without
(session.py). One JVM records at a time (a lock file); the others start without an archive.

``FRUIT_SPARK_CLASS_ARCHIVE``: the folder (default ``$XDG_CACHE_HOME/fruit_assets/spark-class-archive``,
the image's is baked at build time), or ``off``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

ARCHIVE_VARIABLE = "FRUIT_SPARK_CLASS_ARCHIVE"
OFF = "off"
# The archive's own messages (classes it cannot hold, its dump) are not the user's business.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
# A lock whose writer is not on this machine's process table, or this old, is abandoned.
STALE_LOCK_SECONDS = 24 * 3600.0

USE, RECORD = "use", "record"


@dataclass(frozen=True)
class ClassArchive:
    """What a driver JVM about to start does with the archive: ``use`` it, ``record`` it (then
    ``finish_recording`` after its SparkContext stopped), or nothing (``mode`` empty)."""

    mode: str = ""
    path: str = ""  # use: the archive; record: the temporary file the JVM writes
    final_path: str = ""  # record: the name it takes once complete
    lock_path: str = ""

    @property
    def java_options(self) -> str:
        if self.mode == USE:
            return f"-XX:SharedArchiveFile={self.path} {QUIET}"
        if self.mode == RECORD:
            return f"-XX:ArchiveClassesAtExit={self.path} {QUIET}"
        return ""


def archive_folder(environ=None) -> str | None:
    environ = os.environ if environ is None else environ
    setting = environ.get(ARCHIVE_VARIABLE, "")
    if setting.strip().lower() == OFF:
        return None
    if setting:
        return setting
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "fruit_assets", "spark-class-archive")


def archive_key(conf: dict[str, str]) -> str:
    """Of what the archive is valid for: the java binary, the jars on the driver's class path (the
    JVM refuses an archive whose class path differs) and the options that shape the heap."""
    digest = hashlib.sha256()
    java = _java_binary()
    for path in [java, *_jars()]:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    for name in ("spark.driver.extraClassPath", "spark.jars", "spark.driver.memory"):
        digest.update(f"{name}={conf.get(name, '')}\n".encode())
    return digest.hexdigest()[:16]


def plan_archive(conf: dict[str, str], environ=None) -> ClassArchive:
    """Use the archive for this JVM and class path if there is a complete one; else record one,
    unless another JVM is recording it or the folder cannot be written (a read-only image)."""
    folder = archive_folder(environ)
    if folder is None:
        return ClassArchive()
    key = archive_key(conf)
    existing = _complete_archive(folder, key)
    if existing:
        return ClassArchive(USE, existing)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = _take_lock(folder, key)
    except OSError:
        return ClassArchive()
    if lock is None:
        return ClassArchive()
    return ClassArchive(RECORD, os.path.join(folder, f"{key}.{os.getpid()}.tmp"), os.path.join(folder, key), lock)


def finish_recording(archive: ClassArchive, gateway_process, timeout: float = 300.0) -> str | None:
    """After the recording JVM's SparkContext stopped: ends the JVM (its stdin closed, as when Python
    exits), waits for it to write the archive, and gives the archive its final name; returns that
    path, or None when no complete archive came out (the lock is released either way)."""
    try:
        if gateway_process is not None:
            if gateway_process.stdin is not None:
                gateway_process.stdin.close()
            code = gateway_process.wait(timeout)
        else:
            code = None
        if code == 0 and os.path.isfile(archive.path) and os.path.getsize(archive.path) > 0:
            final = f"{archive.final_path}.{os.path.getsize(archive.path)}.jsa"
            _remove_other_archives(os.path.dirname(final))
            os.replace(archive.path, final)
            return final
        return None
    except Exception:  # noqa: BLE001 - an archive is only a head start for the next JVM
        return None
    finally:
        _remove(archive.path)
        _remove(archive.lock_path)


def discard(path: str) -> None:
    """Removes an archive the JVM would not start with, and the crash report (``hs_err_pid*.log``)
    the JVM wrote about it in the working directory: the failure is handled, so the report would
    only be litter in the user's folder (or repository)."""
    _remove(path)
    for folder in {os.getcwd(), tempfile.gettempdir()}:
        for report in glob.glob(os.path.join(glob.escape(folder), "hs_err_pid*.log")):
            try:
                with open(report, errors="replace") as handle:
                    mentions_archive = f"-XX:SharedArchiveFile={path} " in handle.read(1 << 20)
            except OSError:
                continue
            if mentions_archive:
                _remove(report)


def _complete_archive(folder: str, key: str) -> str | None:
    for path in glob.glob(os.path.join(glob.escape(folder), f"{key}.*.jsa")):
        size = path[: -len(".jsa")].rsplit(".", 1)[-1]
        try:
            if size.isdigit() and os.path.getsize(path) == int(size):
                return path
        except OSError:
            continue
    return None


def _take_lock(folder: str, key: str) -> str | None:
    lock = os.path.join(folder, f"{key}.recording")
    for _attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _abandoned(lock):
                return None
            _remove(lock)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.uname().nodename} {os.getpid()}\n")
        return lock
    return None


def _abandoned(lock: str) -> bool:
    try:
        with open(lock) as handle:
            host, _, pid = handle.read().strip().partition(" ")
        age = time.time() - os.path.getmtime(lock)
    except (OSError, ValueError):
        return True
    if age > STALE_LOCK_SECONDS:
        return True
    if host == os.uname().nodename and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


def _remove_other_archives(folder: str) -> None:
    # One archive per folder: a new JVM or new jars make the previous one useless, at 120 MB.
    for path in glob.glob(os.path.join(glob.escape(folder), "*.jsa")):
        _remove(path)
    for path in glob.glob(os.path.join(glob.escape(folder), "*.tmp")):
        # A recording whose JVM outlived its Python process (never finished) wrote here.
        if time.time() - os.path.getmtime(path) > 3600:
            _remove(path)


def _remove(path: str) -> None:
    if path:
        try:
            os.remove(path)
        except OSError:
            pass


def _java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java") or "java"
    return os.path.realpath(java)


def _jars() -> list[str]:
    home = os.environ.get("SPARK_HOME")
    if not home:
        import pyspark

        home = os.path.dirname(pyspark.__file__)
    return sorted(glob.glob(os.path.join(home, "jars", "*.jar")))


def record_now() -> str | None:
    """Records the archive with a short local Spark job unless there is one (the image build and the
    test session run this first, so their later JVMs map it): the archive's path, or None when there
    was nothing to record (one exists, another JVM is recording it, or it is off)."""
    from fruit_assets.spark_jobs.session import SparkSettings, build_spark_context, session_conf, stop_spark

    settings = SparkSettings(master="local[1]", app_name="fruit_assets-class-archive")
    folder = archive_folder()
    if folder is None or _complete_archive(folder, archive_key(session_conf(settings))):
        return None
    context = build_spark_context(settings)
    context.parallelize(range(4), 2).map(lambda x: x * x).sum()
    return stop_spark(context)


if __name__ == "__main__":
    recorded = record_now()
    print(recorded or "no archive recorded: one exists, another JVM is recording it, or it is off")
    sys.exit(0)
