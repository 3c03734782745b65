"""fruit-assets upload (sync_folder) against the real S3 server."""

import os
import subprocess
import sys

from fruit_assets.storage import open_store
from fruit_assets.storage.sync import sync_folder


def test_upload_is_idempotent_and_resumes(sample_source, s3_bucket):
    source = os.path.join(sample_source, "Training")
    dest = f"s3://{s3_bucket}/fruits/Training"
    store = open_store(dest)

    # An upload interrupted after some files: those are in the bucket already.
    banana = os.path.join(source, "Banana")
    for name in sorted(os.listdir(banana))[:5]:
        with open(os.path.join(banana, name), "rb") as handle:
            store.write_bytes(f"{dest}/Banana/{name}", handle.read())

    resumed = sync_folder(source, dest, threads=4)
    assert (resumed.files, resumed.uploaded, resumed.skipped) == (36, 31, 5)
    assert len(list(store.list_objects(dest))) == 36
    with open(os.path.join(banana, "3_100.jpg"), "rb") as handle:
        assert store.read_bytes(f"{dest}/Banana/3_100.jpg") == handle.read()

    again = sync_folder(source, dest, threads=4)
    assert (again.uploaded, again.skipped, again.bytes_uploaded) == (0, 36, 0)


def test_upload_replaces_a_changed_object(sample_source, s3_bucket, tmp_path):
    import shutil

    source = tmp_path / "Training"
    shutil.copytree(os.path.join(sample_source, "Training"), source)
    dest = f"s3://{s3_bucket}/Training"
    sync_folder(str(source), dest)
    (source / "Banana" / "0_100.jpg").write_bytes(b"same name, other content")
    report = sync_folder(str(source), dest)
    assert report.uploaded == 1
    assert open_store(dest).read_bytes(f"{dest}/Banana/0_100.jpg") == b"same name, other content"


def test_upload_command_prints_progress_and_summary(sample_source, s3_bucket):
    cli = os.path.join(os.path.dirname(sys.executable), "fruit-assets")
    dest = f"s3://{s3_bucket}/p/Training"
    first = subprocess.run([cli, "upload", os.path.join(sample_source, "Training"), dest],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "36 files: 36 uploaded" in first.stdout
    assert "36/36" in first.stderr and "MB sent" in first.stderr  # tqdm: files and bytes
    second = subprocess.run([cli, "upload", os.path.join(sample_source, "Training"), dest, "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert "0 uploaded (0.0 MB), 36 already there" in second.stdout

    sample = subprocess.run([cli, "sample", f"s3://{s3_bucket}/generated", "--classes", "2", "--images", "3"],
                            capture_output=True, text=True, timeout=300)
    assert sample.returncode == 0, sample.stderr
    assert len(list(open_store(dest).list_objects(f"s3://{s3_bucket}/generated/Training"))) == 6
