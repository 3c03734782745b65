"""What the sensor compares from one tick to the next: one fingerprint per class of Training/, the
changes between two sets of them, and the cursor that carries them. No Dagster.

A class's fingerprint is a digest of its sorted (key, etag, size) triples, so the sensor's cursor
holds one short string per class (not one entry per image) and still notices added, modified
(new ETag) and deleted images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from fruit_assets.layout import DataLayout
from fruit_assets.steps.classes import InvalidClass, check_class_names
from fruit_assets.steps.manifest import images_only, manifest_listed_at, read_manifest_if_any
from fruit_assets.storage import open_store
from fruit_assets.storage.local_store import local_content_etag

CURSOR_VERSION = 1


@dataclass
class Changes:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def to_run(self) -> list[str]:
        return sorted(self.new + self.changed)


@dataclass
class TrainingListing:
    fingerprints: dict[str, str]  # {class: fingerprint}, the valid classes holding objects
    objects: int
    unchanged: set[str]  # classes whose objects are what their manifest recorded (if asked)
    invalid: list[InvalidClass]  # folders skipped for their names


def class_fingerprints(
    layout: DataLayout, threads: int = 16, against_manifests: bool = False, keep: Iterable[str] = ()
) -> TrainingListing:
    """One listing of each class prefix, the prefixes listed concurrently: a tick costs about one
    S3 page round-trip per 1,000 objects / threads. Folder names are checked first
    (steps/classes.py; ``keep``: the known classes, which win a tie between twin names). With
    ``against_manifests`` (a sensor's first tick), each class's listing is also compared with the
    manifest raw_images last wrote for it."""
    store = open_store(layout.root)
    results: dict[str, tuple[str, int, bool]] = {}

    def fingerprint(fruit_class: str) -> tuple[str, str, int, bool]:
        folder = layout.training_class(fruit_class)
        digest = hashlib.sha256()
        # The listing streams through the digest: a tick holds O(classes), not O(objects); only the
        # first tick, which compares a class with its manifest, keeps that one class's listing.
        listing, count = [], 0
        for info in store.list_objects(folder, content_hash=False):
            digest.update(f"{info.uri[len(folder) + 1 :]}\0{info.etag}\0{info.size}\n".encode())
            count += 1
            if against_manifests:
                listing.append(info)
        unchanged = against_manifests and bool(listing) and matches_manifest(layout, fruit_class, listing)
        return fruit_class, digest.hexdigest()[:20], count, unchanged

    def present(names: list[str]) -> list[str]:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for name, value, count, unchanged in pool.map(fingerprint, names):
                results[name] = (value, count, unchanged)
        # An emptied folder can linger as a prefix (local dirs, filer-backed S3): no objects = no class.
        return [name for name, (_v, count, _u) in results.items() if count]

    classes, invalid = check_class_names(store.list_folders(layout.training), layout, keep, present)
    return TrainingListing(
        {c: results[c][0] for c in classes},
        sum(results[c][1] for c in classes),
        {c for c in classes if results[c][2]},
        invalid,
    )


def matches_manifest(layout: DataLayout, fruit_class: str, listing: list, manifest=None) -> bool:
    """Are these objects, by (key, ETag, size), exactly what the class's manifest (read here unless
    given) recorded? Listings of local files carry no content hash (mtime instead): when paths and
    sizes already agree, each file is compared by content unless its modification time shows it
    untouched since it was hashed (``_local_files_match``)."""
    manifest = manifest if manifest is not None else read_manifest_if_any(layout, fruit_class)
    if manifest is None:
        return False
    recorded = _triples(manifest)
    listing = images_only(listing)
    if {(i.uri, i.size) for i in listing} != {(p, size) for p, _e, size in recorded} or len(listing) != len(recorded):
        return False
    if any(info.etag.startswith("mtime:") for info in listing):
        return _local_files_match(manifest, listing)
    return {(i.uri, i.etag, i.size) for i in listing} == recorded


# A file modified this close before the listing that hashed it may have been modified again within
# the same millisecond after (git's "racily clean" entries): it is hashed again.
RACY_SECONDS = 2.0


def _local_files_match(manifest, listing: list) -> bool:
    """Local files, whose paths and sizes are those of the manifest: rsync's quick check. A file
    whose modification time (to the millisecond) is the one recorded, older than the recording
    listing by RACY_SECONDS, is taken as unchanged; any other is hashed and compared with the
    recorded ETag (so a change that keeps the size and the mtime to the millisecond, which only
    a deliberate ``touch -d`` makes, is not seen: S3 listings compare ETags always). A manifest
    written before listings were timed has every file hashed."""
    listed_at = manifest_listed_at(manifest)
    recorded = {
        path: (etag, ms)
        for path, etag, ms in zip(
            manifest["path"].to_pylist(), manifest["etag"].to_pylist(), manifest["mtime"].cast(pa.int64()).to_pylist()
        )
    }
    for info in listing:
        etag, ms = recorded[info.uri]
        untouched = listed_at is not None and int(info.mtime * 1000) == ms and info.mtime < listed_at - RACY_SECONDS
        if not untouched and local_content_etag(info.uri) != etag:
            return False
    return True


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
