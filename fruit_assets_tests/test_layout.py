"""Where every dataset lives under the data root, for file:// and s3:// roots alike."""

import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.storage.class_folders import class_folder


@pytest.fixture(params=["s3", "local"])
def root(request, tmp_path) -> tuple[DataLayout, str]:
    """(layout, the root URI every location must start with)."""
    if request.param == "s3":
        return DataLayout.at("s3a://b/p/"), "s3://b/p"
    return DataLayout.at(str(tmp_path) + "/"), f"file://{tmp_path}"


def test_every_dataset_location(root):
    layout, base = root
    assert layout.root == base
    assert layout.training == f"{base}/Training"
    assert layout.training_class("Apple Red 1") == f"{base}/Training/Apple Red 1"
    assert layout.manifest("Apple Red 1") == f"{base}/manifests/fruit_class=Apple Red 1/manifest.parquet"
    assert layout.embeddings == f"{base}/embeddings"
    assert layout.quarantine == f"{base}/quarantine"
    assert layout.reduced_features == f"{base}/output/resultats_features_parquet"
    assert layout.pca_model == f"{base}/models/pca/pca.npz"
    assert layout.review == f"{base}/review"
    assert layout.review_table("Banana") == f"{base}/review/fruit_class=Banana/flagged.parquet"
    assert layout.embedding_models == f"{base}/models/embedding"
    assert layout.embedding_model("ab12") == f"{base}/models/embedding/ab12.onnx"
    assert layout.embedding_model_record("ab12") == f"{base}/models/embedding/ab12.json"
    assert layout.embedding_model_index == f"{base}/models/embedding/weights-index.json"
    assert layout.staging("run-0001") == f"{base}/_staging/run-0001"
    assert layout.class_folder(layout.embeddings, "Banana") == f"{base}/embeddings/fruit_class=Banana"


def test_work_in_progress_is_never_inside_an_output_folder(root):
    layout, base = root
    staging = layout.staging("tok")
    outputs = [layout.embeddings, layout.quarantine, layout.reduced_features, layout.review, f"{base}/manifests"]
    assert not [output for output in outputs if staging.startswith(output + "/")]
    assert staging.rsplit("/", 2)[-2].startswith("_")  # skipped by Spark and pyarrow when reading the root


def test_class_names_keep_their_spaces_in_training_and_are_escaped_in_outputs(root):
    layout, base = root
    name = 'Pêche "plate" d\'été #1'
    escaped = "fruit_class=Pêche %22plate%22 d%27été %231"
    assert layout.training_class(name) == f"{base}/Training/{name}"  # the user's own folder, as named
    assert layout.manifest(name) == f"{base}/manifests/{escaped}/manifest.parquet"
    assert layout.review_table(name) == f"{base}/review/{escaped}/flagged.parquet"
    assert layout.class_folder(layout.reduced_features, name) == \
        f"{base}/output/resultats_features_parquet/{escaped}"
    assert layout.class_folder("s3://x/d", name) == class_folder("s3://x/d", name) == f"s3://x/d/{escaped}"


def test_relative_roots_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DataLayout.at("./data").embeddings == f"file://{tmp_path}/data/embeddings"
