"""The commands a user types, run as subprocesses against a real Dagster instance and Spark."""

import os
import subprocess
import sys

import pyarrow.dataset as ds
import pytest


BIN = os.path.dirname(sys.executable)


def run(args, env_extra, timeout=600):
    env = {**os.environ, **env_extra}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def test_sample_writes_fruits360_layout(tmp_path):
    result = run([f"{BIN}/fruit-assets", "sample", str(tmp_path), "--classes", "4", "--images", "3", "--seed", "9"], {})
    assert result.returncode == 0, result.stderr
    classes = sorted(os.listdir(tmp_path / "Training"))
    assert classes == ["Apple Red 1", "Banana", "Kiwi", "Pepper Red"]
    assert sorted(os.listdir(tmp_path / "Training" / "Banana")) == ["0_100.jpg", "1_100.jpg", "2_100.jpg"]
    from PIL import Image

    with Image.open(tmp_path / "Training" / "Kiwi" / "2_100.jpg") as image:
        assert image.size == (100, 100) and image.format == "JPEG"


def test_materialize_without_training_folder_is_one_clear_line(tmp_path):
    result = run([f"{BIN}/fruit-assets", "materialize"], {"FRUIT_DATA_URI": str(tmp_path), "DAGSTER_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "Training/<Class>" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_materialize_command_then_dagster_cli(tmp_path, sample_source, weights_file):
    import shutil

    shutil.copytree(os.path.join(sample_source, "Training"), tmp_path / "data" / "Training")
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        "FRUIT_DATA_URI": str(tmp_path / "data"),
        "FRUIT_MODEL_WEIGHTS": weights_file,
        "SPARK_MASTER": "local[2]",
        "FRUIT_PCA_VARIANCE": "0.8",
        "DAGSTER_HOME": str(home),
    }
    result = run([f"{BIN}/fruit-assets", "materialize"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "images               36 (36 embedded, 0 quarantined)" in result.stdout
    assert "target 0.8" in result.stdout
    reduced = ds.dataset(str(tmp_path / "data" / "output" / "resultats_features_parquet")).to_table()
    assert reduced.num_rows == 36

    # The same code location through Dagster's own CLI (`-m fruit_assets`), partitions registered above.
    os.remove(tmp_path / "data" / "Training" / "Banana" / "0_100.jpg")
    result = run(
        [f"{BIN}/dagster", "asset", "materialize", "-m", "fruit_assets", "--select", "raw_images", "--partition", "Banana"],
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = ds.dataset(str(tmp_path / "data" / "manifests" / "fruit_class=Banana")).to_table()
    assert manifest.num_rows == 11
