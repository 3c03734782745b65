"""Fault injection at the named steps of a publication (storage/versions.py)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterable

# FRUIT_PUBLICATION_KILL_AT=<checkpoint>[@<dataset>][:<n>] SIGKILLs this process the
# n-th time it reaches that checkpoint (of a publication that changes <dataset>, if given). The crash
# tests use it to stop a real publication between any two of its storage operations; unset, it does
# nothing. FRUIT_PUBLICATION_FAULT=stop sends SIGSTOP instead (a writer stalled whole, its lease
# renewal too, until SIGCONT); =hold creates the file FRUIT_PUBLICATION_HOLD_FILE names and waits
# there, its lease renewed, until the file is gone (a slow writer, alive).
_reached: Counter = Counter()


def checkpoint(name: str, datasets: Iterable[str] = ()) -> None:
    target = os.environ.get("FRUIT_PUBLICATION_KILL_AT")
    if not target:
        return
    wanted, _, nth = target.partition(":")
    wanted, _, dataset = wanted.partition("@")
    if wanted == name and (not dataset or dataset in datasets):
        _reached[target] += 1
        if _reached[target] == int(nth or 1):
            fault = os.environ.get("FRUIT_PUBLICATION_FAULT", "kill")
            if fault == "hold":
                hold_file = os.environ["FRUIT_PUBLICATION_HOLD_FILE"]
                open(hold_file, "w").close()
                while os.path.exists(hold_file):
                    time.sleep(0.1)
            else:
                os.kill(os.getpid(), signal.SIGSTOP if fault == "stop" else signal.SIGKILL)
