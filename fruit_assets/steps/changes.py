"""What changed under Training/ since the last look, and the outputs of classes that are gone. No Dagster.

A class's fingerprint is a digest of its sorted (key, etag, size) triples, so the sensor's cursor
holds one short string per class (not one entry per image) and still notices added, modified
(new ETag) and deleted images. A class whose folder is gone from Training/ but whose outputs remain
is a ghost: its outputs are removed (``remove_ghost_classes``), unless so many classes vanished at
once that a wrong prefix or an outage is the likelier story (``MassDeletionError``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fruit_assets.errors import UserFacingError
from fruit_assets.layout import DataLayout
from fruit_assets.steps.moments import publish_keeping_moments
from fruit_assets.steps.pca import pca_record
from fruit_assets.steps.manifest import images_only, list_class_images, read_manifest_if_any, training_classes
from fruit_assets.steps.publication import current_made_from, made_with, manifest_digest, published_entries
from fruit_assets.storage import StorageError, open_store
from fruit_assets.storage.partitions import classes_in
from fruit_assets.storage.versions import current_version, publish, recover

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


def matches_manifest(layout: DataLayout, fruit_class: str, listing: list, manifest=None) -> bool:
    """Are these objects, by (key, ETag, size), exactly what the class's manifest (read here unless
    given) recorded? Listings of local files carry no content hash (mtime instead): the class is
    listed again the way raw_images lists it (content hashed), once, and only when paths and sizes
    already agree."""
    manifest = manifest if manifest is not None else read_manifest_if_any(layout, fruit_class)
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


def spanning_range(selected: list[str], ordered: list[str]) -> list[tuple[str, str]]:
    """One partition range from the first to the last of ``selected`` in the instance's order (none
    if nothing is selected): one run however scattered the changes, each run paying a run start and
    a Spark application (a pod and executors on Kubernetes). The classes in between that did not
    change cost a manifest read in it: the embedding step leaves them as published."""
    wanted = set(selected)
    inside = [key for key in ordered if key in wanted]
    return [(inside[0], inside[-1])] if inside else []


class MassDeletionError(UserFacingError):
    """Training/ lost so many classes at once that deleting their outputs needs a deliberate yes."""


def output_classes(layout: DataLayout, threads: int = 16) -> set[str]:
    """Every class that has objects in a dataset derived from Training/ (an emptied folder can
    linger as a prefix on filer-backed S3: no objects, no class)."""

    def has_objects(fruit_class: str) -> bool:
        return any(open_store(dataset).holds_objects(layout.class_folder(dataset, fruit_class))
                   for dataset in layout.class_datasets)

    named = sorted({c for dataset in layout.class_datasets for c in classes_in(dataset)})
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return {c for c, present in zip(named, pool.map(has_objects, named)) if present}


def check_deletions(gone: list[str], known: int, training: list[str], allow_mass_deletion: bool, where: str) -> None:
    """Refuses to treat an empty listing, or the loss of more than half of the ``known`` classes at
    once, as deletions, unless ``allow_mass_deletion``."""
    if allow_mass_deletion or not gone:
        return
    if not training:
        raise MassDeletionError(
            f"no class folders under {where}/ (a wrong FRUIT_DATA_URI or an outage?): refusing to delete the "
            f"outputs of {len(gone)} classes; allow a deliberate mass deletion to proceed")
    if len(gone) * 2 > known:
        raise MassDeletionError(
            f"{len(gone)} of {known} classes are gone from {where}/ at once ({', '.join(gone[:5])}"
            f"{', ...' if len(gone) > 5 else ''}): refusing to delete their outputs; allow a deliberate mass "
            "deletion to proceed")


def remove_ghost_classes(layout: DataLayout, allow_mass_deletion: bool = False, also_known=(),
                         spark=None) -> tuple[list[str], list[str]]:
    """Deletes every output of the classes whose folder is gone from Training/; returns (the classes
    on Training/, the classes removed). The published features go first, the manifests last, so a
    removal that stops midway is found again (and finished) by the next one. ``also_known``:
    classes known elsewhere (registered partitions), counted by the mass-deletion guard too.
    ``spark`` (a session, or a function returning one): with it, the PCA's saved moments lose the
    removed rows, so the refit that follows reads no embedding."""
    training = training_classes(layout)
    outputs = output_classes(layout)  # one listing of the output folders serves every question below
    if not training and not outputs:
        raise StorageError(f"no class folders under {layout.training}/: FRUIT_DATA_URI must hold "
                           "Training/<Class>/<images> (try `fruit-assets sample <root>`)")
    ghosts = sorted(outputs - set(training))
    known = outputs | set(also_known)
    check_deletions(sorted(known - set(training)), len(known | set(training)), training, allow_mass_deletion,
                    layout.training)
    if ghosts:
        # One version without them (their published rows go atomically), then the unversioned
        # per-class state; a removal that stops midway is found again by the next one.
        writer = f"remove-{uuid.uuid4().hex[:12]}"
        if spark is None:
            publish(layout.root, writer, removed_classes=ghosts)
        else:
            publish_keeping_moments(spark, layout, writer, {c: [] for c in ghosts}, removed_classes=ghosts)
        for fruit_class in ghosts:
            for dataset in layout.class_datasets:
                folder = layout.class_folder(dataset, fruit_class)
                open_store(folder).delete_prefix(folder)
    return training, ghosts


def unchanged_since_publication(layout: DataLayout, classes: list[str], model_tag: str, variance_target: float) -> int | None:
    """The number of images if the published features are exactly what ``classes`` (Training/ now),
    the model ``model_tag`` ("engine/weights fingerprint") and the variance target would give
    again; None as soon as anything differs. Listings and small files only: no Spark."""
    pca = pca_record(layout)
    if pca is None or abs(pca["variance_target"] - variance_target) > 1e-12:
        return None
    entries = published_entries(layout)
    if any((entries.get(c) or {}).get("pca") != pca["fingerprint"] for c in classes):
        return None
    images = 0
    for fruit_class in classes:
        count = _images_if_as_published(layout, fruit_class, entries.get(fruit_class), model_tag)
        if count is None:
            return None
        images += count
    return images


def changed_since_publication(layout: DataLayout, classes: list[str], model_tag: str, threads: int = 16) -> list[str]:
    """The classes whose images (by key, ETag and size) or model differ from what their published
    rows were made from: those a run must embed again. The others' embeddings stand as published.
    Listings and small files only, the classes looked at concurrently."""
    version = current_version(layout.root)

    def changed(fruit_class: str) -> bool:
        return _images_if_as_published(layout, fruit_class, current_made_from(version, fruit_class), model_tag) is None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [c for c, differs in zip(classes, pool.map(changed, classes)) if differs]


def _images_if_as_published(layout: DataLayout, fruit_class: str, entry: dict | None, model_tag: str) -> int | None:
    if entry is None or not made_with(entry, model_tag):
        return None
    manifest = read_manifest_if_any(layout, fruit_class)
    if manifest is None or manifest_digest(manifest) != entry["manifest"]:
        return None
    folder = layout.training_class(fruit_class)
    if not matches_manifest(layout, fruit_class, list(open_store(folder).list_objects(folder, content_hash=False)),
                            manifest):
        return None
    return manifest.num_rows


def recover_publications(layout: DataLayout) -> list[str]:
    """Cleans what publications that died left under the root (storage/versions.recover)."""
    return recover(layout.root)
