"""A progress report, the listeners that show it, and a throttle. No Dagster, no Spark.

Jobs report through ``notify``; whoever shows progress in this process (the CLI's bar, a step's
run-log pulse) listens, so the job need not know its audience.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def describe(self, unit: str = "images") -> str:
        percent = 100.0 * self.done / self.total if self.total else 100.0
        eta = self.eta_seconds
        eta_text = "?" if eta is None else _clock(eta)
        return (
            f"{self.done}/{self.total} {unit} ({percent:.0f}%), {self.rate:.1f} {unit}/s, "
            f"elapsed {_clock(self.seconds)}, ETA {eta_text}"
        )


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


ProgressCallback = Callable[[Progress], None]

# Whoever shows progress in this process (the CLI's bar) listens here; jobs need not know them.
_listeners: list[ProgressCallback] = []
_listeners_lock = threading.Lock()


def add_listener(callback: ProgressCallback) -> None:
    with _listeners_lock:
        _listeners.append(callback)


def remove_listener(callback: ProgressCallback) -> None:
    with _listeners_lock:
        if callback in _listeners:
            _listeners.remove(callback)


def notify(callbacks: list[ProgressCallback], progress: Progress) -> None:
    with _listeners_lock:
        everyone = callbacks + list(_listeners)
    for callback in everyone:
        try:
            callback(progress)
        except Exception:  # noqa: BLE001 - a broken display must never fail the job it watches
            pass


class Throttled:
    """Passes on a progress report when ``every_seconds`` passed or ``every_fraction`` of the
    work was done since the last one, and always the last one (done == total)."""

    def __init__(self, emit: ProgressCallback, every_seconds: float = 10.0, every_fraction: float = 0.05):
        self.emit = emit
        self.every_seconds = every_seconds
        self.every_fraction = every_fraction
        self._last_time = float("-inf")
        self._last_done = None

    def __call__(self, progress: Progress) -> None:
        if progress.done == self._last_done:
            return
        now = time.monotonic()
        finished = progress.done >= progress.total
        step = self.every_fraction * max(progress.total, 1)
        if finished or now - self._last_time >= self.every_seconds or progress.done - (self._last_done or 0) >= step:
            self._last_time, self._last_done = now, progress.done
            self.emit(progress)
