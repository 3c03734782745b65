"""What the command line shows: a quiet terminal, a progress display, the instance set up. No Dagster
import at module level (the CLI imports this before deciding what to load).

By default the process's standard error (file descriptor 2) goes to a log file: Dagster's event
stream, Spark's log4j and JVM lines, TensorFlow's C++ logging and every Python worker's stderr are
all written there, since they all inherit that descriptor, and none reaches the terminal. What the
user is meant to read (one line per run, the progress, errors, the summary) goes to standard output
or to the terminal's original stderr.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from importlib import resources

from fruit_assets.progress import Progress, Throttled

VERBOSE, NORMAL, QUIET = 2, 1, 0


def instance_yaml() -> str:
    """The repository's dagster.yaml (shipped inside the package as well)."""
    return resources.files("fruit_assets").joinpath("instance", "dagster.yaml").read_text()


def prepare_dagster_home(say=print) -> str:
    """DAGSTER_HOME as the repository means it: created if missing (default ``./.dagster_home``)
    and given the repository's dagster.yaml (run queue, run monitoring, concurrency pool) unless
    it already has one, which is never overwritten."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = os.path.abspath(".dagster_home")
        os.environ["DAGSTER_HOME"] = home
        say(f"DAGSTER_HOME not set: using {home}")
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "x") as handle:
            handle.write(instance_yaml())
        say(f"wrote the repository's instance settings to {config}")
    return home


class Terminal:
    """Routes stderr (fd 2) to ``log_path`` unless verbose; ``say`` and ``error`` reach the user."""

    def __init__(self, verbosity: int, log_path: str):
        self.verbosity = verbosity
        self.log_path = log_path
        self._saved_stderr = None
        self.user_stderr = sys.stderr

    def __enter__(self) -> Terminal:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        if self.verbosity < VERBOSE:
            sys.stdout.flush()
            sys.stderr.flush()
            self._saved_stderr = os.dup(2)
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            self.user_stderr = os.fdopen(os.dup(self._saved_stderr), "w", buffering=1)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved_stderr is not None:
            sys.stderr.flush()
            os.dup2(self._saved_stderr, 2)
            os.close(self._saved_stderr)
            self._saved_stderr = None
            self.user_stderr.close()
            self.user_stderr = sys.stderr

    def say(self, text: str) -> None:
        """A line for the default and verbose modes."""
        if self.verbosity >= NORMAL:
            print(text, flush=True)

    def always(self, text: str = "") -> None:
        print(text, flush=True)

    def error(self, text: str) -> None:
        print(f"error: {text}", file=self.user_stderr, flush=True)


class ProgressDisplay:
    """A live bar on a terminal; on a pipe or file (CI logs), a plain line every 10 s or 10%."""

    def __init__(self, terminal: Terminal, label: str = "embedding", stream=None):
        self.terminal = terminal
        self.label = label
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty()
        self._bar = None
        self._plain = Throttled(self._line, every_seconds=10.0, every_fraction=0.10)

    def _line(self, progress: Progress) -> None:
        print(f"   {self.label}: {progress.describe()}", file=self.stream, flush=True)

    def __call__(self, progress: Progress) -> None:
        if self.terminal.verbosity < NORMAL:
            return
        if not self.interactive:
            self._plain(progress)
            return
        from tqdm import tqdm

        if self._bar is None or self._bar.total != progress.total:
            self.close()
            self._bar = tqdm(
                total=progress.total,
                unit="img",
                desc=f"   {self.label}",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
                smoothing=0.1,
            )
        self._bar.update(progress.done - self._bar.n)
        if progress.done >= progress.total:
            self.close()

    def close(self) -> None:
        """Ends the current job's display: the next job gets a bar, or plain lines, of its own."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._plain = Throttled(self._line, every_seconds=10.0, every_fraction=0.10)


def run_log_path(home: str) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(home, "logs", f"materialize-{stamp}-{os.getpid()}.log")
