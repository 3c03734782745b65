"""reduced_features: every embedding projected onto the current PCA basis. No Dagster."""

from __future__ import annotations

import time

import numpy as np

from fruit_assets.errors import UserFacingError
from fruit_assets.featurize.engines import precision_of
from fruit_assets.layout import DataLayout
from fruit_assets.pca import PcaModel, save_pca
from fruit_assets.spark_jobs.pca import project_files
from fruit_assets.spark_jobs.validate import sample_first_components
from fruit_assets.steps.manifest import read_manifest_if_any, training_classes
from fruit_assets.steps.pca import embedding_files, read_pca
from fruit_assets.steps.publication import embeddings_digest, manifest_digest, projected_as_published
from fruit_assets.steps.reports import ClassCounts, StepReport, TakenSample
from fruit_assets.steps.staging import discard_staging
from fruit_assets.storage import open_store
from fruit_assets.storage.published_files import class_files
from fruit_assets.storage.version_record import Version
from fruit_assets.storage.versions import current_version, publish


class MixedModelsError(UserFacingError):
    """The table would hold embeddings of more than one model (weights, engine or precision)."""


def build_reduced_features(
    spark, layout: DataLayout, classes: list[str], run_token: str, sample_rates: dict[str, float] | None = None
) -> tuple[StepReport, PcaModel]:
    """Projects ``classes`` onto the current basis and publishes them with it. If the basis is not
    the published one, every published class is projected too (one version, one basis): a
    materialization of a few partitions after a refit, from the UI or a partial backfill, never
    publishes a table that mixes bases. A class whose published rows were projected from its
    current embeddings files with this basis is left as it is (``report.up_to_date``); if that is
    every class, nothing is read, projected or published. With ``sample_rates``, the projection
    tasks also take the separability sample of the classes they project (``report.sample``), so
    the measurement after a new basis needs no second pass over the embeddings."""
    started = time.perf_counter()
    report = StepReport(output=layout.reduced_features)
    model = read_pca(layout)
    published = current_version(layout.root)
    if (published.pca or {}).get("fingerprint") != model.fingerprint:
        classes = sorted(set(classes) | set(published.classes("reduced_features")))
    else:
        report.up_to_date = [c for c in classes if projected_as_published(published, c, model.fingerprint)]
        classes = [c for c in classes if c not in report.up_to_date]
        for fruit_class in report.up_to_date:
            rows = published.made_from[fruit_class].get("rows", 0)
            report.per_class[fruit_class] = ClassCounts(images=rows, embedded=rows)
    # A class asked for (a partition not yet deleted) whose folder is gone and whose outputs were
    # removed has nothing to project: reported, not a failure of the others.
    unpublished = [
        c for c in classes if not published.class_uris("embeddings", c) and not published.class_uris("quarantine", c)
    ]
    if unpublished:
        on_training = set(training_classes(layout))
        report.removed = [c for c in unpublished if c not in on_training]
        classes = [c for c in classes if c not in report.removed]
    files = embedding_files(layout, classes, published)
    if not classes:
        report.seconds = time.perf_counter() - started
        return report, model
    pca_bytes = save_pca(model, with_basis=False)
    work = [(fruit_class, uri) for fruit_class, uris in files.items() for uri in uris]
    staging = layout.staging(run_token)
    try:
        staged: dict[str, list[str]] = {}
        models: dict[str, set[str]] = {c: set() for c in classes}
        samples = []
        heads: list[tuple[str, str, bytes]] = []
        for fruit_class, uri, rows, model_tag, sample, head in project_files(
            spark, work, pca_bytes, f"{staging}/reduced", run_token[:8], sample_rates
        ):
            heads.append((fruit_class, uri, head))
            if sample is not None:
                samples.append((fruit_class, *sample))
            staged.setdefault(fruit_class, []).append(uri)
            models[fruit_class].add(model_tag)
            counts = report.per_class.setdefault(fruit_class, ClassCounts())
            counts.images += rows
            counts.embedded += rows
        for fruit_class in classes:
            report.per_class.setdefault(fruit_class, ClassCounts())
        for fruit_class, _uri, head in sorted(heads):
            points = np.frombuffer(head, np.float32).reshape(-1, min(2, model.k)) if model.k else np.zeros((0, 0))
            report.first_components.setdefault(fruit_class, []).extend(points.astype(float).tolist())
        if sample_rates is not None:
            report.sample = TakenSample({c: sample_rates[c] for c in classes if c in sample_rates}, samples)
        _require_one_model(published, models, set(open_store(layout.training).list_folders(layout.training)))
        # The basis these rows were projected with, published with them under its fingerprint.
        basis_uri = f"{staging}/pca/{model.fingerprint}.npz"
        open_store(basis_uri).write_bytes(basis_uri, save_pca(model))
        publish(
            layout.root,
            run_token,
            {"reduced_features": {c: staged.get(c, []) for c in classes}},
            pca={"fingerprint": model.fingerprint, "k": model.k},
            pca_model_uri=basis_uri,
            made_from={
                c: _published_entry(
                    layout,
                    c,
                    models[c],
                    model.fingerprint,
                    embeddings_digest(published, [c]),
                    report.per_class[c].images,
                )
                for c in classes
            },
            expected_base=published.number,
        )
    finally:
        discard_staging(staging)
    report.seconds = time.perf_counter() - started
    return report, model


def _require_one_model(published: Version, projected: dict[str, set[str]], on_training: set[str]) -> None:
    """One published table, one model: rows of bf16 beside rows of fp32 (or of other weights) are
    not comparable, and a PCA fit over both describes neither. After FRUIT_INFERENCE_PRECISION or the
    weights change, the table is published again once every class is embedded with the new model.
    The fp32 engines agree within the parity rule (1e-4), so they count as one model. A published
    class whose folder is gone is not asked to be embedded again: pca_model removes its outputs."""
    tags = dict(projected)
    for fruit_class in published.classes("reduced_features"):
        if fruit_class not in tags and fruit_class in on_training:
            entry = published.made_from.get(fruit_class) or {}
            tags[fruit_class] = set(filter(None, entry.get("model", "").split(",")))
    classes_by_model: dict[str, list[str]] = {}
    for fruit_class, class_tags in sorted(tags.items()):
        for tag in class_tags:
            engine, _, weights = tag.partition("/")
            classes_by_model.setdefault(f"{precision_of(engine)} {weights}", []).append(fruit_class)
    if len(classes_by_model) > 1:

        def named(classes: list[str]) -> str:
            return ", ".join(classes[:3]) + (f" and {len(classes) - 3} more" if len(classes) > 3 else "")

        mixed = "; ".join(f"{tag} ({named(classes)})" for tag, classes in sorted(classes_by_model.items()))
        raise MixedModelsError(
            f"the feature table would mix embeddings of {len(classes_by_model)} models: {mixed}; materialize "
            "image_embeddings for every class with the model now configured (FRUIT_INFERENCE_PRECISION, "
            "FRUIT_MODEL_WEIGHTS, FRUIT_INFERENCE_ENGINE), then reduced_features"
        )


def _published_entry(
    layout: DataLayout, fruit_class: str, model_tags: set[str], pca_fingerprint: str, embeddings: str, rows: int
) -> dict:
    manifest = read_manifest_if_any(layout, fruit_class)
    return {
        "manifest": manifest_digest(manifest) if manifest is not None else "",
        # A class of quarantined images only has no embeddings, hence no model tag.
        "model": ",".join(sorted(model_tags)),
        "pca": pca_fingerprint,
        # Which embeddings files (immutable, uniquely named) the rows were projected from.
        "embeddings": embeddings,
        "rows": rows,
    }


def first_components(
    spark, layout: DataLayout, classes: list[str], report: StepReport | None = None
) -> tuple[list[str], list[list[float]]]:
    """(class labels, [pc1, pc2]) of a bounded sample of the committed reduced features, for a plot:
    of the classes ``report``'s projection wrote, what it took as it wrote them; the others' read."""
    taken = report.first_components if report is not None else {}
    labels, points = sample_first_components(
        spark, class_files(layout.reduced_features, [c for c in classes if c not in taken])
    )
    for fruit_class in sorted(c for c in classes if c in taken):
        labels += [fruit_class] * len(taken[fruit_class])
        points += taken[fruit_class]
    return labels, points
