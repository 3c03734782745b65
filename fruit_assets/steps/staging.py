"""Staging folders left by runs that died before their own cleanup. No Dagster."""

from __future__ import annotations

from fruit_assets.layout import DataLayout
from fruit_assets.storage import open_store
from fruit_assets.storage.commit import discard_staging


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
