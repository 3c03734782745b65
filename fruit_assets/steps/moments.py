"""The moments (count, mean, centred XᵀX) of every published embedding, kept current as classes
change, so that a refit of the PCA reads one 13 MB file instead of every embedding. No Dagster.

A moments file is named by the rows it sums: the digest of the published embeddings files of the
classes that have some (files are immutable and never renamed, so a digest names one set of rows
for ever): ``<root>/models/moments/<digest>.npz``. Who writes one:

- ``pca_model``, after a pass over every embedding, saves the moments of what it fit on;
- ``image_embeddings``, when the moments of the version it builds on exist, derives those of the
  version it publishes: minus the superseded files of the classes it changes (read before the
  publication deletes them), plus their new files (read while staged). It reads only what changed.

Anything else that changes the embeddings (a class removed by hand, a crash between a publication
and the save) leaves no moments under the new digest: the next fit reads every embedding and saves
them again. Speed depends on this file, correctness never does.

Per-class moments (what a refit by classes would sum) would cost more than they save: a 1280 x 1280
float64 scatter is 13 MB, more than the embeddings of a 700-image class. One total, updated by the
changed classes' differences, is read once per fit whatever the number of classes.
"""

from __future__ import annotations

import io

import numpy as np

from fruit_assets.layout import DataLayout
from fruit_assets.pca import Moments
from fruit_assets.spark_jobs.pca import embedding_moments, file_moments
from fruit_assets.steps.publication import embeddings_digest
from fruit_assets.storage import StorageError, open_store
from fruit_assets.storage.uris import join_uri
from fruit_assets.storage.version_record import Version
from fruit_assets.storage.versions import current_version, publish

# Up to this many files (a few classes changed), the driver reads them itself: a Spark job costs
# more than reading a few MB. More than that (a round of uploads to many classes), tasks do.
DRIVER_FILES = 16

# Each derived total adds float64 rounding (~1e-16 of the scatter) to its predecessor's: after this
# many chained updates the next fit reads every embedding and starts the chain again.
MAX_CHAINED_UPDATES = 64


def rows_digest(version: Version, classes=None) -> str:
    """Names the embedding rows of ``classes`` (default: every class) in ``version``; classes
    without embeddings files (every image quarantined) contribute no rows, so they do not count."""
    classes = version.classes("embeddings") if classes is None else classes
    return embeddings_digest(version, [c for c in classes if version.class_uris("embeddings", c)])


def moments_folder(layout: DataLayout) -> str:
    return join_uri(layout.root, "models", "moments")


def _moments_uri(layout: DataLayout, digest: str) -> str:
    return join_uri(moments_folder(layout), f"{digest}.npz")


def saved_moments(layout: DataLayout, version: Version, classes=None) -> tuple[Moments, int] | None:
    """(moments, chained updates) of exactly the embedding rows of ``classes`` in ``version``, if
    saved; None if not (or unreadable: a fit then reads the embeddings)."""
    uri = _moments_uri(layout, rows_digest(version, classes))
    store = open_store(uri)
    try:
        if not store.exists(uri):
            return None
        arrays = np.load(io.BytesIO(store.read_bytes(uri)))
        moments = Moments(int(arrays["count"]), arrays["mean"], arrays["scatter"])
        updates = int(arrays["updates"])
    except (StorageError, OSError, ValueError, KeyError):
        return None
    return moments, updates


def save_moments(layout: DataLayout, version: Version, moments: Moments, updates: int = 0, classes=None) -> str:
    """Saves ``moments`` as those of the embedding rows of ``classes`` in ``version`` and deletes
    every other moments file (one publishing step per data root runs at a time: none is in use)."""
    uri = _moments_uri(layout, rows_digest(version, classes))
    buffer = io.BytesIO()
    np.savez(buffer, count=moments.count, mean=moments.mean, scatter=moments.scatter, updates=updates)
    store = open_store(uri)
    store.write_bytes(uri, buffer.getvalue())
    store.delete(info.uri for info in store.list_objects(moments_folder(layout), content_hash=False) if info.uri != uri)
    return uri


class MomentsUpdate:
    """The moments of the version a step is about to publish, from those of the version it builds
    on. ``prepare`` before the publication (it reads the superseded and the staged files, which the
    publication deletes or moves), ``save`` after it."""

    def __init__(self, layout: DataLayout, base: Version):
        self.layout, self.base = layout, base
        saved = saved_moments(layout, base)
        self.prior = saved if saved is not None and saved[1] < MAX_CHAINED_UPDATES else None
        self.updated: Moments | None = None

    def prepare(self, spark, new_files: dict[str, list[str]]) -> None:
        """``new_files``: class -> its embeddings files in the coming version (staged URIs; [] when
        the class has none any more). ``spark``: a session, or a function returning one (called
        only if there is something to read)."""
        if self.prior is None or not new_files:
            return
        superseded = [uri for c in new_files for uri in self.base.class_uris("embeddings", c)]
        added = [uri for uris in new_files.values() for uri in uris]
        if not superseded and not added:
            self.updated = self.prior[0]
            return
        if len(superseded) + len(added) <= DRIVER_FILES:
            minus, plus = file_moments(superseded), file_moments(added)
        else:
            session = spark() if callable(spark) else spark
            minus, plus = embedding_moments(session, superseded), embedding_moments(session, added)
        self.updated = self.prior[0].subtract(minus).merge(plus)

    def save(self, published: Version) -> bool:
        """Saves the derived moments under ``published``'s rows, if it is the version right after
        the base (no other writer in between); True if saved."""
        if self.updated is None or published.number != self.base.number + 1:
            return False
        assert self.prior is not None  # updated is only ever derived from prior
        save_moments(self.layout, published, self.updated, self.prior[1] + 1)
        return True


def publish_keeping_moments(
    spark, layout: DataLayout, writer: str, embeddings_after: dict[str, list[str]], **publication
) -> tuple[Version, bool]:
    """``storage.versions.publish(layout.root, writer, **publication)``, the kept moments carried
    over to the version it publishes: ``embeddings_after`` names, for each class whose embeddings
    it changes, its files in that version (staged URIs; [] for a class that loses them). Returns
    (the version, whether its moments were derived)."""
    update = MomentsUpdate(layout, current_version(layout.root))
    update.prepare(spark, embeddings_after)  # before the publication deletes or moves what it reads
    version = publish(layout.root, writer, **publication)
    return version, update.save(version)
