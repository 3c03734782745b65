"""What the published feature table was made from. No Dagster.

Each published version (storage/versions.py) holds, per class, the digest of the manifest its rows
were embedded from, the (engine, weights) that embedded them and the PCA basis that projected them;
the reduced_features step publishes them with the rows, in the same atomic write. They let
``fruit-assets materialize`` tell, from listings and small files alone (no Spark, no Dagster run),
that nothing changed since the table was published, and let each step leave a class as published.
The rule "this class is already as published" lives here, once per kind of input: the images and
model its embeddings were made from (``embeddings_as_published`` for a step holding the manifest,
``unchanged_since_publication`` and ``changed_since_publication`` for the command line, from
listings), the basis its rows were projected on (``projected_as_published``).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from fruit_assets.layout import DataLayout
from fruit_assets.steps.fingerprints import matches_manifest
from fruit_assets.steps.fitted_pca_record import read_fitted_pca_record
from fruit_assets.steps.manifest import read_manifest_if_any
from fruit_assets.storage import open_store
from fruit_assets.storage.version_record import Version
from fruit_assets.storage.versions import current_version


def manifest_digest(manifest: pa.Table) -> str:
    """Of the (path, etag, size) triples, in path order: what raw_images saw of the class."""
    digest = hashlib.sha256()
    for path, etag, size in sorted(
        zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist(), manifest["size"].to_pylist())
    ):
        digest.update(f"{path}\0{etag}\0{size}\n".encode())
    return digest.hexdigest()[:20]


def published_entries(layout: DataLayout) -> dict[str, dict]:
    return current_version(layout.root).made_from


def embeddings_digest(version: Version, classes) -> str:
    """Of the published embeddings files of ``classes`` in ``version``. Files are immutable and
    every new one gets a new name, so an equal digest means the very same embeddings."""
    digest = hashlib.sha256()
    for fruit_class in sorted(classes):
        digest.update(
            f"{fruit_class}\0{chr(31).join(version.files.get('embeddings', {}).get(fruit_class, ()))}\n".encode()
        )
    return digest.hexdigest()[:20]


def current_made_from(version: Version, fruit_class: str) -> dict | None:
    """What the class's published rows were made from (images, model, basis), if its published
    embeddings are still the very files that record names; None otherwise."""
    entry = version.made_from.get(fruit_class)
    return entry if entry is not None and entry.get("embeddings") == embeddings_digest(version, [fruit_class]) else None


def made_with(entry: dict, model_tag: str) -> bool:
    # A class whose every image was quarantined has no embeddings, hence no model tag.
    return entry.get("model") in (model_tag, "")


def published_embeddings_versions(layout: DataLayout, classes) -> tuple[dict[str, str], str]:
    """The data versions of image_embeddings: which files are published for each of ``classes``,
    and for all of them together, from one read of the current version."""
    version = current_version(layout.root)
    return {c: embeddings_digest(version, [c]) for c in classes}, embeddings_digest(version, classes)


def embeddings_as_published(published: Version, fruit_class: str, manifest, model_tag: str) -> bool:
    """Were the class's published embeddings made from exactly these images (the manifest's
    digest, as the projection recorded it, from these very files) with this model? A class with
    quarantine files takes the long way: a quarantined image that vanished and is back is read again."""
    entry = current_made_from(published, fruit_class)
    return (
        entry is not None
        and not published.class_uris("quarantine", fruit_class)
        and made_with(entry, model_tag)
        and entry.get("rows") == len(manifest)
        and entry.get("manifest") == manifest_digest(manifest)
    )


def projected_as_published(published: Version, fruit_class: str, pca_fingerprint: str) -> bool:
    entry = published.made_from.get(fruit_class) or {}
    projected = bool(published.class_uris("reduced_features", fruit_class)) or not published.class_uris(
        "embeddings", fruit_class
    )
    return (
        projected
        and entry.get("pca") == pca_fingerprint
        and entry.get("embeddings") == embeddings_digest(published, [fruit_class])
    )


def classes_as_published(
    layout: DataLayout, classes: list[str], model_tag: str, threads: int = 16
) -> dict[str, int | None]:
    """Per class, its number of images if its images (by key, ETag and size) and the model
    ``model_tag`` ("engine/weights fingerprint") are what its published rows were made from, from
    these very embeddings files; else None: a run must embed it again. Listings and small files
    only, the classes looked at concurrently: no Spark."""
    version = current_version(layout.root)

    def images(fruit_class: str) -> int | None:
        return _images_if_as_published(layout, fruit_class, current_made_from(version, fruit_class), model_tag)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(classes, pool.map(images, classes)))


def changed_since_publication(layout: DataLayout, classes: list[str], model_tag: str) -> list[str]:
    """The classes a run must embed again (``classes_as_published`` says None); the others'
    embeddings stand as published."""
    return [c for c, images in classes_as_published(layout, classes, model_tag).items() if images is None]


def unchanged_since_publication(
    layout: DataLayout, classes: list[str], as_published: dict[str, int | None], variance_target: float
) -> int | None:
    """The number of images if the published features are exactly what ``classes`` (Training/ now,
    each as ``classes_as_published`` found it) and the variance target would give again: every
    class as published and projected with the current basis, fit for this target. None as soon
    as anything differs."""
    pca = read_fitted_pca_record(layout)
    if pca is None or abs(pca["variance_target"] - variance_target) > 1e-12:
        return None
    entries = published_entries(layout)
    if any((entries.get(c) or {}).get("pca") != pca["fingerprint"] for c in classes):
        return None
    counts = [as_published.get(c) for c in classes]
    return None if any(n is None for n in counts) else sum(n for n in counts if n is not None)


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
