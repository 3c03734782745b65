"""``aws s3 sync``-style copy of a local folder to any store (file:// or s3://)."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fruit_assets.storage.objects import open_store
from fruit_assets.storage.uris import join_uri, normalize_uri


@dataclass
class SyncReport:
    files: int = 0
    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0


def sync_folder(source: str, destination: str, threads: int = 16, progress=None) -> SyncReport:
    """Uploads every file under ``source`` that the destination lacks or holds with another size or
    content hash (MD5 = S3's single-part ETag). Re-running after an interruption uploads only what
    is missing; a second run over an unchanged tree uploads nothing.
    ``progress(files_done, bytes_done)`` is called as files complete."""
    source = os.path.abspath(os.path.expanduser(source))
    if not os.path.isdir(source):
        raise FileNotFoundError(f"{source} is not a folder")
    destination = normalize_uri(destination)
    store = open_store(destination)
    existing = {info.uri: (info.size, info.etag) for info in store.list_objects(destination)}
    report = SyncReport()
    plan = []
    for directory, _dirs, files in sorted(os.walk(source)):
        for name in sorted(files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, source).replace(os.sep, "/")
            plan.append((path, join_uri(destination, relative)))
    report.files = len(plan)

    def transfer(item):
        path, uri = item
        with open(path, "rb") as handle:
            data = handle.read()
        if existing.get(uri) == (len(data), hashlib.md5(data, usedforsecurity=False).hexdigest()):
            return 0, False
        store.write_bytes(uri, data)
        return len(data), True

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for size, uploaded in pool.map(transfer, plan):
            if uploaded:
                report.uploaded += 1
                report.bytes_uploaded += size
            else:
                report.skipped += 1
            if progress:
                progress(1, size)
    return report
