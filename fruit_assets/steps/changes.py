"""What changed under Training/ since the last look, and the outputs of classes that are gone. No Dagster.

A class's fingerprint is a digest of its sorted (key, etag, size) triples, so the sensor's cursor
holds one short string per class (not one entry per image) and still notices added, modified
(new ETag) and deleted images. A class whose folder is gone from Training/ but whose outputs remain
is a ghost: its outputs are removed (``remove_ghost_classes``), unless so many classes vanished at
once that a wrong prefix or an outage is the likelier story (``MassDeletionError``; the rule, shared
with the sensor and the command line, is steps/classes.py's).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fruit_assets.layout import DataLayout
from fruit_assets.steps.classes import (
    ClassPlan,
    InvalidClass,
    MassDeletionError,  # noqa: F401 - raised by remove_ghost_classes, caught from here
    check_class_names,
    plan_classes,
)
from fruit_assets.steps.manifest import images_only, list_class_images, read_manifest_if_any, training_folders
from fruit_assets.steps.moments import publish_keeping_moments
from fruit_assets.steps.pca import pca_record
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


def spanning_ranges(selected: list[str], ordered: list[str], barriers=()) -> list[tuple[str, str]]:
    """``spanning_range`` within each stretch of ``ordered`` between ``barriers``: partitions that
    stay registered although their folder is gone (a refused deletion). A range across one would
    run raw_images on a class with no objects, and fail."""
    barriers = set(barriers)
    ranges, stretch = [], []
    for key in list(ordered) + [None]:
        if key is None or key in barriers:
            in_stretch = set(stretch)
            ranges += spanning_range([c for c in selected if c in in_stretch], stretch)
            stretch = []
        else:
            stretch.append(key)
    return ranges


def _named_output_classes(layout: DataLayout) -> set[str]:
    return {c for dataset in layout.class_datasets for c in classes_in(dataset)}


def _holding_objects(layout: DataLayout, named: Iterable[str], threads: int) -> set[str]:
    def has_objects(fruit_class: str) -> bool:
        return any(
            open_store(dataset).holds_objects(layout.class_folder(dataset, fruit_class))
            for dataset in layout.class_datasets
        )

    named = sorted(named)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return {c for c, present in zip(named, pool.map(has_objects, named)) if present}


def output_classes(layout: DataLayout, threads: int = 16) -> set[str]:
    """Every class that has objects in a dataset derived from Training/ (an emptied folder can
    linger as a prefix on filer-backed S3: no objects, no class)."""
    return _holding_objects(layout, _named_output_classes(layout), threads)


def known_classes(layout: DataLayout, registered: Iterable[str], threads: int = 16) -> set[str]:
    """The registered classes and those with outputs: what the mass-deletion guard counts. A
    registered class named in an output folder is not looked into (on a sensor's tick, every 30 s,
    that would be one more listing per class); the union is the same."""
    registered = set(registered)
    return registered | _holding_objects(layout, _named_output_classes(layout) - registered, threads)


@dataclass(frozen=True)
class GhostRemoval:
    training: list[str]  # the valid classes on Training/
    removed: list[str]  # the classes whose outputs were removed now
    invalid: list[InvalidClass]  # class folders skipped for their names
    plan: ClassPlan


def remove_ghost_classes(
    layout: DataLayout, allow_mass_deletion: bool = False, also_known=(), spark=None
) -> GhostRemoval:
    """Deletes every output of the classes whose folder is gone from Training/. The published
    features go first, the manifests last, so a removal that stops midway is found again (and
    finished) by the next one. ``also_known``: the registered partitions, known classes too
    (steps/classes.py: the mass-deletion guard counts them, and the plan names those to
    deregister). ``spark`` (a session, or a function returning one): with it, the PCA's saved
    moments lose the removed rows, so the refit that follows reads no embedding."""
    outputs = output_classes(layout)  # one listing of the output folders serves every question below
    training, invalid = training_folders(layout, keep=outputs | set(also_known))
    if not training and not outputs:
        raise StorageError(
            f"no class folders under {layout.training}/: FRUIT_DATA_URI must hold "
            "Training/<Class>/<images> (try `fruit-assets sample <root>`)"
        )
    plan = plan_classes(training, also_known, outputs, allow_mass_deletion, layout.training)
    plan.raise_if_refused()
    ghosts = [c for c in plan.to_remove if c in outputs]
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
    return GhostRemoval(training, ghosts, invalid, plan)


def unchanged_since_publication(
    layout: DataLayout, classes: list[str], model_tag: str, variance_target: float
) -> int | None:
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
    if not matches_manifest(
        layout, fruit_class, list(open_store(folder).list_objects(folder, content_hash=False)), manifest
    ):
        return None
    return manifest.num_rows


def recover_publications(layout: DataLayout) -> list[str]:
    """Cleans what publications that died left under the root (storage/versions.recover)."""
    return recover(layout.root)
