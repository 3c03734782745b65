"""The pipeline's steps as plain functions over (Spark session, data layout). No Dagster.

Dagster assets call these and turn the reports into metadata; tests and benchmarks call them
directly. Every step writes under ``_staging/<run_token>/`` and commits class folders at the end,
so an output folder holds one complete version whatever happens to the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fruit_assets import baked_model, model_registry
from fruit_assets.errors import ConfigurationError, UserFacingError
from fruit_assets.featurize.engines import ONNXRUNTIME, TENSORFLOW, InferenceModel, check_engine
from fruit_assets.layout import DataLayout
from fruit_assets.manifest import list_class_images, read_manifest, write_manifest
from fruit_assets.pca import PcaModel, fit_from_moments, load_pca, save_pca
from fruit_assets.spark_jobs.commit import commit_class_folder, dataset_files, discard_staging
from fruit_assets.spark_jobs.embed import EmbedSettings, carry_forward, embed_images
from fruit_assets.spark_jobs.pca import embedding_moments, project_files
from fruit_assets.storage import StorageError, open_store


class AccountingError(UserFacingError):
    """Images in the manifest != images embedded + images quarantined."""


class ModelParityError(UserFacingError):
    """The converted model does not compute what TensorFlow computes with the same weights."""


@dataclass
class ClassCounts:
    images: int = 0
    embedded: int = 0
    quarantined: int = 0
    featurized: int = 0  # images decoded (and embedded or quarantined) by this run
    reused: int = 0  # rows carried over from the previous materialization
    remodeled: int = 0  # previous rows computed with another engine or weights: embedded again


@dataclass
class StepReport:
    per_class: dict[str, ClassCounts] = field(default_factory=dict)
    seconds: float = 0.0
    output: str = ""

    @property
    def images(self) -> int:
        return sum(c.images for c in self.per_class.values())

    @property
    def embedded(self) -> int:
        return sum(c.embedded for c in self.per_class.values())

    @property
    def quarantined(self) -> int:
        return sum(c.quarantined for c in self.per_class.values())

    @property
    def featurized(self) -> int:
        return sum(c.featurized for c in self.per_class.values())

    @property
    def reused(self) -> int:
        return sum(c.reused for c in self.per_class.values())

    @property
    def remodeled(self) -> int:
        return sum(c.remodeled for c in self.per_class.values())

    @property
    def images_per_second(self) -> float:
        """Throughput of the work done: images featurized by this run (all images for steps that
        featurize nothing, such as manifests and projections) per second."""
        done = self.featurized or self.images
        return done / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ModelReport:
    model: InferenceModel
    record: model_registry.ConvertedModel | None  # None when the engine is TensorFlow itself
    converted: bool = False  # this call ran tf2onnx
    adopted: bool = False  # this call copied the container image's baked model in (baked_model.py)
    measured: bool = False  # this call measured parity against TensorFlow
    seconds: float = 0.0


def parity_images():
    """Fixed preprocessed images the converted model is compared on (odd sizes and colours
    included: the synthetic sample's fruit on varied backgrounds)."""
    from fruit_assets.featurize.images import preprocess_batch
    from fruit_assets.sample import synthetic_images

    return preprocess_batch(synthetic_images(8, seed=2024))


def build_embedding_model(layout: DataLayout, weights_spec: str, random_seed: int, verify: bool = True) -> ModelReport:
    """The ONNX model for the weights ``weights_spec`` names, converted once per weights.

    A stored model whose hash matches its record is reused; with ``verify`` its parity with
    TensorFlow is measured again on the stored bytes (what the asset check reports), otherwise the
    recorded parity stands and TensorFlow is not even imported."""
    from fruit_assets.featurize.model import resolve_weights

    started = time.perf_counter()
    key = model_registry.weights_key(weights_spec, random_seed)
    record = model_registry.find(layout, key)
    adopted = False
    if record is None:  # a container image may carry one for these weights (baked_model.py)
        record = baked_model.adopt(layout, key)
        adopted = record is not None
    onnx_bytes = model_registry.read_model(layout, record) if record else None
    if record is not None and onnx_bytes is not None and not verify:
        model = InferenceModel(ONNXRUNTIME, record.fingerprint, record.source, onnx_bytes,
                               layout.embedding_model(record.fingerprint))
        return ModelReport(model, record, adopted=adopted, seconds=time.perf_counter() - started)

    from importlib.metadata import version

    from fruit_assets.featurize.onnx_model import ONNX_OPSET, convert_to_onnx, measure_parity

    weights = resolve_weights(weights_spec, random_seed)
    converted = record is None or onnx_bytes is None or record.fingerprint != weights.fingerprint
    if converted:
        onnx_bytes = convert_to_onnx(weights, ONNX_OPSET)
    parity = measure_parity(weights, onnx_bytes, parity_images())
    record = model_registry.ConvertedModel(
        weights_key=key, fingerprint=weights.fingerprint, source=weights.source,
        sha256=model_registry.sha256(onnx_bytes), opset=record.opset if record and not converted else ONNX_OPSET,
        parity_max_abs=parity.max_abs, parity_max_rel=parity.max_rel, parity_images=parity.images,
        versions={name: version(name) for name in ("tensorflow-cpu", "tf2onnx", "onnxruntime", "keras")},
    )
    model_registry.save(layout, record, onnx_bytes if converted else None)
    model = InferenceModel(ONNXRUNTIME, weights.fingerprint, weights.source, onnx_bytes,
                           layout.embedding_model(weights.fingerprint))
    return ModelReport(model, record, converted=converted, adopted=adopted and not converted, measured=True,
                       seconds=time.perf_counter() - started)


def inference_model(layout: DataLayout, engine: str, weights_spec: str, random_seed: int) -> ModelReport:
    """What a run that embeds broadcasts: the converted model (converted now if this is the first
    run with these weights) or, for the TensorFlow engine, the weight arrays themselves."""
    engine = check_engine(engine)
    if engine == TENSORFLOW:
        from fruit_assets.featurize.model import resolve_weights

        started = time.perf_counter()
        weights = resolve_weights(weights_spec, random_seed)
        return ModelReport(InferenceModel(TENSORFLOW, weights.fingerprint, weights.source, weights.arrays),
                           None, seconds=time.perf_counter() - started)
    report = build_embedding_model(layout, weights_spec, random_seed, verify=False)
    return require_parity(report, "re-materialize embedding_model after deleting it, or set FRUIT_INFERENCE_ENGINE=tensorflow")


def require_parity(report: ModelReport, remedy: str) -> ModelReport:
    """``report`` if its converted model's recorded parity with TensorFlow is within tolerance."""
    from fruit_assets.featurize.onnx_model import PARITY_TOLERANCE

    if not report.record.parity_max_rel <= PARITY_TOLERANCE:
        raise ModelParityError(
            f"the converted model {report.model.location} differs from TensorFlow by "
            f"{report.record.parity_max_rel:.2g} (relative; limit {PARITY_TOLERANCE:g}): {remedy}"
        )
    return report


def build_manifests(layout: DataLayout, classes: list[str]) -> StepReport:
    started = time.perf_counter()
    report = StepReport(output=f"{layout.root}/manifests")
    for fruit_class in classes:
        manifest = list_class_images(layout, fruit_class)
        write_manifest(layout, fruit_class, manifest)
        report.per_class[fruit_class] = ClassCounts(images=len(manifest))
    report.seconds = time.perf_counter() - started
    return report


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


def build_embeddings(spark, layout: DataLayout, classes: list[str], model: InferenceModel, run_token: str,
                     settings: EmbedSettings = EmbedSettings(), incremental: bool = True,
                     on_progress: list | None = None) -> StepReport:
    """Embeds the classes' images with ``model``; with ``incremental``, only images whose (path,
    content ETag), engine or weights differ from the previous materialization. Deleted images
    drop out."""
    started = time.perf_counter()
    report = StepReport(output=layout.embeddings)
    manifests = {}
    for fruit_class in classes:
        manifests[fruit_class] = read_manifest(layout, fruit_class)
        report.per_class[fruit_class] = ClassCounts(images=len(manifests[fruit_class]))
    staging = layout.staging(run_token)
    tag = run_token[:8]
    try:
        staged: dict[tuple[str, str], list[str]] = {}
        kept_paths: dict[str, set[str]] = {c: set() for c in classes}
        if incremental:
            work = [
                (kind, fruit_class, files)
                for fruit_class in classes
                for kind, dataset in (("embeddings", layout.embeddings), ("quarantine", layout.quarantine))
                if (files := dataset_files(dataset, fruit_class))
            ]
            manifest_uris = {c: layout.manifest(c) for c in classes}
            carried = carry_forward(spark, work, manifest_uris, model.engine, model.fingerprint, staging, tag)
            for kind, fruit_class, uri, paths, remodeled in carried:
                if uri:
                    staged.setdefault((fruit_class, kind), []).append(uri)
                kept_paths[fruit_class].update(paths)
                counts = report.per_class[fruit_class]
                counts.reused += len(paths)
                counts.remodeled += remodeled
                if kind == "embeddings":
                    counts.embedded += len(paths)
                else:
                    counts.quarantined += len(paths)
        rows = [
            (path, fruit_class, etag)
            for fruit_class, manifest in manifests.items()
            for path, etag in zip(manifest["path"].to_pylist(), manifest["etag"].to_pylist())
            if path not in kept_paths[fruit_class]
        ]
        outcome = embed_images(spark, rows, model, staging, settings, file_tag=tag, on_progress=on_progress)
        for (fruit_class, kind), uris in outcome.staged.items():
            staged.setdefault((fruit_class, kind), []).extend(uris)
        for fruit_class, counts in report.per_class.items():
            new_embedded = outcome.count(fruit_class, "embeddings")
            new_quarantined = outcome.count(fruit_class, "quarantine")
            counts.embedded += new_embedded
            counts.quarantined += new_quarantined
            counts.featurized = new_embedded + new_quarantined
            if counts.embedded + counts.quarantined != counts.images:
                raise AccountingError(
                    f"class {fruit_class!r}: {counts.images} images in the manifest but "
                    f"{counts.embedded} embedded + {counts.quarantined} quarantined"
                )
        for fruit_class in classes:
            for kind, final in (("embeddings", layout.embeddings), ("quarantine", layout.quarantine)):
                commit_class_folder(f"{staging}/{kind}", final, fruit_class, staged.get((fruit_class, kind), []))
    finally:
        discard_staging(staging)
    report.seconds = time.perf_counter() - started
    return report


def embedding_files(layout: DataLayout, classes: list[str]) -> dict[str, list[str]]:
    files = {fruit_class: dataset_files(layout.embeddings, fruit_class) for fruit_class in classes}
    missing = [c for c in classes if not files[c] and not _materialized(layout, c)]
    if missing:
        raise StorageError(
            f"no embeddings for {len(missing)} class(es) ({', '.join(sorted(missing)[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): materialize image_embeddings for them first"
        )
    return files


def _materialized(layout: DataLayout, fruit_class: str) -> bool:
    """A class whose every image was quarantined has no embeddings files, but committed quarantine ones."""
    return bool(dataset_files(layout.quarantine, fruit_class))


def fit_pca(spark, layout: DataLayout, classes: list[str], variance_target: float) -> PcaModel:
    if not 0.0 < variance_target <= 1.0:
        raise ConfigurationError(f"FRUIT_PCA_VARIANCE must be in (0, 1], got {variance_target}")
    files = [uri for uris in embedding_files(layout, classes).values() for uri in uris]
    model = fit_from_moments(embedding_moments(spark, files), variance_target)
    open_store(layout.pca_model).write_bytes(layout.pca_model, save_pca(model))
    return model


def read_pca(layout: DataLayout) -> PcaModel:
    store = open_store(layout.pca_model)
    if not store.exists(layout.pca_model):
        raise StorageError(f"no PCA model at {layout.pca_model}: materialize pca_model first")
    return load_pca(store.read_bytes(layout.pca_model))


def build_reduced_features(spark, layout: DataLayout, classes: list[str], run_token: str) -> tuple[StepReport, PcaModel]:
    started = time.perf_counter()
    report = StepReport(output=layout.reduced_features)
    model = read_pca(layout)
    pca_bytes = save_pca(model, with_basis=False)
    files = embedding_files(layout, classes)
    work = [(fruit_class, uri) for fruit_class, uris in files.items() for uri in uris]
    staging = layout.staging(run_token)
    try:
        staged: dict[str, list[str]] = {}
        for fruit_class, uri, rows in project_files(spark, work, pca_bytes, f"{staging}/reduced", run_token[:8]):
            staged.setdefault(fruit_class, []).append(uri)
            counts = report.per_class.setdefault(fruit_class, ClassCounts())
            counts.images += rows
            counts.embedded += rows
        for fruit_class in classes:
            report.per_class.setdefault(fruit_class, ClassCounts())
            commit_class_folder(f"{staging}/reduced", layout.reduced_features, fruit_class, staged.get(fruit_class, []))
    finally:
        discard_staging(staging)
    report.seconds = time.perf_counter() - started
    return report, model
