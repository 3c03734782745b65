"""What changed under Training/ since the last look: one fingerprint per class. No Dagster.

A class's fingerprint is a digest of its sorted (key, etag, size) triples, so the sensor's cursor
holds one short string per class (not one entry per image) and still notices added, modified
(new ETag) and deleted images.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fruit_assets.layout import DataLayout
from fruit_assets.steps.manifest import images_only, list_class_images, read_manifest_if_any
from fruit_assets.storage import open_store

CURSOR_VERSION = 1


@dataclass
class Changes:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def to_run(self) -> list[str]:
        return sorted(self.new + self.changed)


def class_fingerprints(layout: DataLayout, threads: int = 16, against_manifests: bool = False
                       ) -> tuple[dict[str, str], int, set[str]]:
    """({class: fingerprint}, object count, classes unchanged since their manifest) from one
    listing of each class prefix, the prefixes listed concurrently: a tick costs about one S3 page
    round-trip per 1,000 objects / threads. With ``against_manifests`` (a sensor's first tick),
    each class's listing is also compared with the manifest raw_images last wrote for it."""
    store = open_store(layout.root)
    classes = store.list_folders(layout.training)

    def fingerprint(fruit_class: str) -> tuple[str, str, int, bool]:
        folder = layout.training_class(fruit_class)
        digest = hashlib.sha256()
        listing = []
        for info in store.list_objects(folder, content_hash=False):
            digest.update(f"{info.uri[len(folder) + 1:]}\0{info.etag}\0{info.size}\n".encode())
            listing.append(info)
        unchanged = against_manifests and bool(listing) and matches_manifest(layout, fruit_class, listing)
        return fruit_class, digest.hexdigest()[:20], len(listing), unchanged

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(fingerprint, classes))
    # An emptied folder can linger as a prefix (local dirs, filer-backed S3): no objects = no class.
    return ({name: value for name, value, count, _ in results if count}, sum(r[2] for r in results),
            {name for name, _, count, unchanged in results if count and unchanged})


def matches_manifest(layout: DataLayout, fruit_class: str, listing: list) -> bool:
    """Are these objects, by (key, ETag, size), exactly what the class's manifest recorded?
    Listings of local files carry no content hash (mtime instead): the class is listed again the
    way raw_images lists it (content hashed), once, and only when paths and sizes already agree."""
    manifest = read_manifest_if_any(layout, fruit_class)
    if manifest is None:
        return False
    recorded = _triples(manifest)
    listing = images_only(listing)
    if {(i.uri, i.size) for i in listing} != {(p, size) for p, _e, size in recorded} or len(listing) != len(recorded):
        return False
    if any(info.etag.startswith("mtime:") for info in listing):
        return _triples(list_class_images(layout, fruit_class)) == recorded
    return {(i.uri, i.etag, i.size) for i in listing} == recorded


def _triples(manifest) -> set[tuple[str, str, int]]:
    return set(zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist(), manifest["size"].to_pylist()))


def diff(previous: dict[str, str], current: dict[str, str]) -> Changes:
    return Changes(
        new=sorted(set(current) - set(previous)),
        changed=sorted(c for c in current if c in previous and previous[c] != current[c]),
        deleted=sorted(set(previous) - set(current)),
    )


def encode_cursor(fingerprints: dict[str, str]) -> str:
    return json.dumps({"v": CURSOR_VERSION, "classes": fingerprints}, separators=(",", ":"), sort_keys=True)


def decode_cursor(cursor: str | None) -> dict[str, str]:
    if not cursor:
        return {}
    data = json.loads(cursor)
    if data.get("v") != CURSOR_VERSION:
        return {}
    return dict(data["classes"])


def contiguous_ranges(selected: list[str], ordered: list[str]) -> list[tuple[str, str]]:
    """Partition ranges (first, last) covering exactly ``selected`` in the instance's order:
    one run per contiguous block, so 'all classes' is a single run."""
    wanted = set(selected)
    ranges, start, previous = [], None, None
    for key in ordered:
        if key in wanted and start is None:
            start = key
        elif key not in wanted and start is not None:
            ranges.append((start, previous))
            start = None
        previous = key
    if start is not None:
        ranges.append((start, previous))
    return ranges
