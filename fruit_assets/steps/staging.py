"""Staging folders: where Spark tasks write before a step publishes, discarded by the step that
made them, or swept when a run died before its own cleanup. No Dagster.

Tasks write under ``_staging/<run>/<dataset>/fruit_class=<c>/`` with names that carry their run,
partition index and attempt number. Only the files that successful attempts reported to the
driver are published; leftovers of failed or speculative attempts never enter a version and go
with the staging folder, so a retried task never duplicates rows. Every class a step touched is
published in one version (storage/versions.publish).
"""

from __future__ import annotations

from fruit_assets.layout import DataLayout
from fruit_assets.storage import open_store


def discard_staging(staging_uri: str) -> None:
    open_store(staging_uri).delete_prefix(staging_uri)


def sweep_abandoned_staging(layout: DataLayout, is_finished) -> list[str]:
    """Deletes ``_staging/<run>/`` folders of runs that ``is_finished(run)`` says are over (a run
    killed before its own cleanup leaves one behind); returns the runs swept. Folders of runs still
    in progress, or unknown to the caller, are left alone."""
    staging_root = layout.staging("")
    store = open_store(staging_root)
    swept = [token for token in store.list_folders(staging_root) if is_finished(token)]
    for token in swept:
        discard_staging(layout.staging(token))
    return swept
