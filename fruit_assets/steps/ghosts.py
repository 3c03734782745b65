"""The outputs of classes that are gone from Training/ (ghosts), and their removal. No Dagster.

A class whose folder is gone from Training/ but whose outputs remain is a ghost: its outputs are
removed (``remove_ghost_classes``), unless so many classes vanished at once that a wrong prefix or
an outage is the likelier story (``MassDeletionError``; the rule, shared with the sensor and the
command line, is steps/classes.py's).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fruit_assets.layout import DataLayout
from fruit_assets.steps.classes import (
    ClassPlan,
    InvalidClass,
    MassDeletionError,  # noqa: F401 - raised by remove_ghost_classes, caught from here
    plan_classes,
)
from fruit_assets.steps.manifest import training_folders
from fruit_assets.steps.moments import publish_keeping_moments
from fruit_assets.storage import StorageError, open_store
from fruit_assets.storage.class_folders import classes_in
from fruit_assets.storage.versions import publish


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
