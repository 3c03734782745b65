"""The commands a user types, run as subprocesses against a real Dagster instance and Spark."""

import os
import subprocess
import sys
import time

import pyarrow.dataset as ds
import pytest

from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs.history import local_event_log_dir
from fruit_assets_tests.harness import REPO
from fruit_assets_tests.harness.images import fresh_jpeg


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


def test_the_command_ends_fast_with_its_exit_status_and_its_whole_output():
    # The command skips the interpreter's teardown (os._exit after every exit handler): the status
    # and the output must be what the command said, whichever way it ended.
    helped = run([f"{BIN}/fruit-assets", "--help"], {})
    assert helped.returncode == 0 and "materialize" in helped.stdout and "spark-history" in helped.stdout
    refused = run([f"{BIN}/fruit-assets", "materialize", "--no-such-flag"], {})
    assert refused.returncode == 2 and "unrecognized arguments: --no-such-flag" in refused.stderr
    ending = "import fruit_assets.cli.main as cli\ndef main(argv=None):\n{}\ncli.main = main\ncli.console()\n"
    for body, status, output in [
        ("    print('x' * 200_000, end=''); return 3", 3, "x" * 200_000),
        ("    raise RuntimeError('broken')", 1, "RuntimeError: broken"),
        ("    raise KeyboardInterrupt", 130, "KeyboardInterrupt"),
    ]:
        result = subprocess.run([sys.executable, "-c", ending.format(body)], capture_output=True, text=True, timeout=120)
        assert result.returncode == status, result.stderr[-2000:]
        assert output == result.stdout or output in result.stderr


NOISE = ("DEBUG", "absl", "I0000", "W0000", "log4j", "Setting default log level", "NativeCodeLoader",
         "Telemetry", "telemetry", "No dagster instance configuration file", "WARN ", "oneDNN", "RESOURCE_INIT")


@pytest.mark.slow
def test_materialize_command_is_quiet_shows_progress_then_dagster_cli(tmp_path, sample_source, weights_file):
    import shutil

    from dagster import DagsterInstance

    shutil.copytree(os.path.join(sample_source, "Training"), tmp_path / "data" / "Training")
    home = tmp_path / "dagster_home"  # not created: the command makes it and writes dagster.yaml
    env = {
        "FRUIT_DATA_URI": str(tmp_path / "data"),
        "FRUIT_MODEL_WEIGHTS": weights_file,
        "SPARK_MASTER": "local[2]",
        "FRUIT_PCA_VARIANCE": "0.8",
        "DAGSTER_HOME": str(home),
    }
    result = run([f"{BIN}/fruit-assets", "materialize"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "images               36 published; in the embedded classes 36 (36 embedded, 0 quarantined)" in out
    assert "target 0.8" in out and "(onnxruntime)" in out
    # A screenful: one line per run, progress lines (stdout is a pipe: plain lines, no bar), summary.
    assert [line.split("  (run")[0] for line in out.splitlines() if line.startswith("[")] == [
        "[1/3] convert_model", "[2/3] embed_classes [Apple Red 1 .. Pepper Red]",
        "[3/3] fit_and_reduce [Apple Red 1 .. Pepper Red]"]
    progress = [line for line in out.splitlines() if line.startswith("   embedding: ")]
    assert progress and progress[-1].startswith("   embedding: 36/36 images (100%)")
    assert len(out.splitlines()) < 30, out
    assert not [line for line in out.splitlines() + result.stderr.splitlines() if any(n in line for n in NOISE)], out + result.stderr
    assert result.stderr == ""
    # Everything else went to the instance and to the log file the summary names.
    log_path = out.split("run log              ")[1].split()[0]
    log = open(log_path).read()
    assert "STEP_SUCCESS" in log and "embedding progress: 36/36 images" in log and "log4j" in log
    # The instance is set up the way the repository means it.
    repository_yaml = open(os.path.join(REPO, "dagster.yaml")).read()
    assert (home / "dagster.yaml").read_text() == repository_yaml
    reduced = ds.dataset(str(tmp_path / "data" / "output" / "resultats_features_parquet")).to_table()
    assert reduced.num_rows == 36

    # A second, verbose run after a copy of an image: the model is converted already (no
    # convert_model run), the copy's embedding is found by content (nothing to featurize), and the
    # run log is on the terminal.
    shutil.copy(tmp_path / "data" / "Training" / "Banana" / "0_100.jpg", tmp_path / "data" / "Training" / "Banana" / "copy_100.jpg")
    verbose = run([f"{BIN}/fruit-assets", "materialize", "-v"], env)
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "[1/2] embed_classes [Banana]  (run" in verbose.stdout and "convert_model" not in verbose.stdout
    assert " - dagster - INFO - embed_classes - " in verbose.stderr
    # Spark's accumulator server seeing the JVM go at the end is not an error on the terminal.
    assert "Traceback" not in verbose.stderr and "EOFError" not in verbose.stderr
    # Only the class that changed is embedded again (the others' files stand), every class is projected.
    assert "classes              3 (2 unchanged since their publication: not embedded again)" in verbose.stdout
    assert "0 featurized now, 13 reused (1 found by content under another path)" in verbose.stdout
    assert "images               37 published" in verbose.stdout

    # On a terminal: a live bar (redrawn with carriage returns), not periodic lines.
    for index in range(4):
        (tmp_path / "data" / "Training" / "Banana" / f"tty_{index}.jpg").write_bytes(fresh_jpeg(index))
    screen = run_on_a_terminal([f"{BIN}/fruit-assets", "materialize", "--class", "Banana"], env)
    assert "\r" in screen and "img/s" in screen and "   embedding: 4/4 images" not in screen, screen
    assert "4 featurized now, 13 reused" in screen
    # The PCA was refit over every class: every class is projected again, never only Banana, so the
    # published table holds one basis (the measured bug: 1,000 rows of the previous basis stayed).
    assert "fit_and_reduce [Apple Red 1 .. Pepper Red]" in screen
    assert published_bases(tmp_path / "data") == {current_basis(tmp_path / "data")}

    # Nothing changed since: no Dagster run, one line, even with -q. The Spark application the
    # command started while it looked is discarded: no event log of it, here or under the root.
    runs_before = len(DagsterInstance.from_config(str(home)).get_runs())
    events_before = set(os.listdir(tmp_path / "data" / "spark-events"))
    quiet = run([f"{BIN}/fruit-assets", "materialize", "-q"], env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.startswith("nothing changed since the last publication (3 classes, 41 images): no run launched")
    assert len(quiet.stdout.splitlines()) == 1
    assert len(DagsterInstance.from_config(str(home)).get_runs()) == runs_before
    assert set(os.listdir(tmp_path / "data" / "spark-events")) == events_before
    local_logs = local_event_log_dir(DataLayout.at(str(tmp_path / "data")).root)
    assert not os.path.isdir(local_logs) or os.listdir(local_logs) == []

    # `fruit-assets ui` afterwards on the same instance: the sensor's first tick sees every class
    # as materialized and requests nothing; a change after that is requested for that class alone.
    ui_stays_quiet_until_a_class_changes(str(home), env, tmp_path / "data")

    # The same code location through Dagster's own CLI (`-m fruit_assets.definitions`), partitions registered above.
    os.remove(tmp_path / "data" / "Training" / "Banana" / "0_100.jpg")
    result = run(
        [f"{BIN}/dagster", "asset", "materialize", "-m", "fruit_assets.definitions", "--select", "raw_images", "--partition", "Banana"],
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = ds.dataset(str(tmp_path / "data" / "manifests" / "fruit_class=Banana")).to_table()
    on_disk = sorted(os.listdir(tmp_path / "data" / "Training" / "Banana"))
    assert len(on_disk) == 17 and "0_100.jpg" not in on_disk  # 12 + 1 (copy) + 4 (terminal run) - 1 + 1 (ui)
    assert sorted(p.rsplit("/", 1)[1] for p in manifest["path"].to_pylist()) == on_disk


@pytest.mark.slow
def test_materialize_mirrors_training_after_a_rename_and_a_delete_and_refuses_a_mass_deletion(
        tmp_path, sample_source, weights_file):
    import shutil

    from dagster import DagsterInstance

    data, home = tmp_path / "data", tmp_path / "home"
    shutil.copytree(os.path.join(sample_source, "Training"), data / "Training")
    env = {"FRUIT_DATA_URI": str(data), "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": "local[2]",
           "FRUIT_PCA_VARIANCE": "0.9", "DAGSTER_HOME": str(home)}
    first = run([f"{BIN}/fruit-assets", "materialize", "-q"], env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    outputs = sorted(os.listdir(data / "output" / "resultats_features_parquet"))

    # Two of three class folders gone at once (a wrong prefix, a half-finished sync): refused.
    for name in ("Apple Red 1", "Banana"):
        shutil.move(data / "Training" / name, tmp_path / name)
    refused = run([f"{BIN}/fruit-assets", "materialize"], env)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: 2 of 3 classes are gone from ") and "--allow-mass-deletion" in refused.stderr
    assert sorted(os.listdir(data / "output" / "resultats_features_parquet")) == outputs
    for name in ("Apple Red 1", "Banana"):
        shutil.move(tmp_path / name, data / "Training" / name)

    # A class renamed and another deleted: nothing featurized, the outputs follow Training/.
    shutil.move(data / "Training" / "Pepper Red", data / "Training" / "Pepper Red Renamed")
    shutil.rmtree(data / "Training" / "Apple Red 1")
    second = run([f"{BIN}/fruit-assets", "materialize"], env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 classes under " in second.stdout and "2 gone: Apple Red 1, Pepper Red" in second.stdout
    assert "0 featurized now, 12 reused (12 found by content under another path)" in second.stdout
    assert "(1 unchanged since their publication: not embedded again)" in second.stdout
    for dataset in ("embeddings", "manifests", "output/resultats_features_parquet"):
        assert sorted(os.listdir(data / dataset)) == ["fruit_class=Banana", "fruit_class=Pepper Red Renamed"], dataset
    reduced = ds.dataset(str(data / "output" / "resultats_features_parquet")).to_table()
    assert reduced.num_rows == 24 and set(reduced["fruit_class"].to_pylist()) == {"Banana", "Pepper Red Renamed"}
    assert published_bases(data) == {current_basis(data)}
    with DagsterInstance.from_config(str(home)) as instance:
        assert set(instance.get_dynamic_partitions("fruit_class")) == {"Banana", "Pepper Red Renamed"}

    # A deliberate mass deletion, allowed: two of three classes go, with every output they had.
    shutil.copytree(os.path.join(sample_source, "Training", "Apple Red 1"), data / "Training" / "Apple Red 1")
    assert run([f"{BIN}/fruit-assets", "materialize", "-q"], env).returncode == 0
    shutil.rmtree(data / "Training" / "Banana")
    shutil.rmtree(data / "Training" / "Apple Red 1")
    allowed = run([f"{BIN}/fruit-assets", "materialize", "-q", "--allow-mass-deletion"], env)
    assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr[-3000:]
    for dataset in ("embeddings", "manifests", "output/resultats_features_parquet"):
        assert sorted(os.listdir(data / dataset)) == ["fruit_class=Pepper Red Renamed"], dataset


@pytest.mark.slow
def test_after_materialize_allow_mass_deletion_the_sensor_requests_a_new_class_and_says_no_refusal(
        tmp_path, weights_file):
    """Issue 28, as measured: 4 of 6 class folders deleted, `fruit-assets materialize
    --allow-mass-deletion` removes their outputs and partitions; the sensor, whose cursor still
    names them, must not refuse that deletion again, and must request a class uploaded afterwards.
    A folder with an unusable name is said by the command, skipped, and reported by pca_model's
    metadata and asset check."""
    import shutil

    from dagster import AssetCheckKey, AssetKey, DagsterInstance

    from fruit_assets.cli.sample import write_sample_dataset
    from fruit_assets_tests.test_sensors import errors, pca_requests, tick

    data, home = tmp_path / "data", tmp_path / "home"
    write_sample_dataset(str(data), 6, 4, seed=5)
    os.makedirs(data / "Training" / "Bad\nName")
    shutil.copy(data / "Training" / "Banana" / "0_100.jpg", data / "Training" / "Bad\nName" / "0_100.jpg")
    env = {"FRUIT_DATA_URI": str(data), "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": "local[2]",
           "FRUIT_PCA_VARIANCE": "0.9", "DAGSTER_HOME": str(home)}
    first = run([f"{BIN}/fruit-assets", "materialize", "-q"], env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"warning: class folder skipped under file://{data}/Training/ for its name: 'Bad\\nName': holds the " \
           "control character U+000A" in first.stdout
    root, logs = f"file://{data}", []
    with DagsterInstance.from_config(str(home)) as instance:
        assert "Bad\nName" not in instance.get_dynamic_partitions("fruit_class")
        metadata = instance.get_latest_materialization_event(AssetKey("pca_model")).asset_materialization.metadata
        assert metadata["invalid_class_folders"].value == "'Bad\\nName': holds the control character U+000A"
        [check] = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("pca_model"), "class_folder_names_are_valid"), limit=1)
        evaluation = check.event.dagster_event.event_specific_data
        assert not evaluation.passed and evaluation.severity.value == "WARN"
        assert "1 class folder(s) under " in evaluation.description

        seen, ranges = tick(instance, root, None, logs)  # `fruit-assets ui` started now: nothing to run
        assert ranges == [] and not errors(logs)

    for name in ("Apple Red 1", "Avocado", "Kiwi", "Lemon"):
        shutil.rmtree(data / "Training" / name)
    refused = run([f"{BIN}/fruit-assets", "materialize", "-q"], env)
    assert refused.returncode == 2 and refused.stderr.startswith("error: 4 of 6 classes are gone from ")
    with DagsterInstance.from_config(str(home)) as instance:
        stuck, ranges = tick(instance, root, seen.cursor, logs)
        assert stuck.skip_reason.skip_message.startswith("4 of 6 classes are gone from ") and len(errors(logs)) == 1

    allowed = run([f"{BIN}/fruit-assets", "materialize", "-q", "--allow-mass-deletion"], env)
    assert allowed.returncode == 0, allowed.stdout[-3000:] + allowed.stderr[-3000:]
    assert sorted(os.listdir(data / "manifests")) == ["fruit_class=Banana", "fruit_class=Pepper Red"]
    shutil.copytree(data / "Training" / "Banana", data / "Training" / "Cherry")
    with DagsterInstance.from_config(str(home)) as instance:
        assert set(instance.get_dynamic_partitions("fruit_class")) == {"Banana", "Pepper Red"}
        after, ranges = tick(instance, root, stuck.cursor, logs)
        assert not errors(logs) and not any("are gone" in message for _level, message in logs)
        assert ranges == [("Cherry", "Cherry")] and pca_requests(after) == []
        assert "Cherry" in instance.get_dynamic_partitions("fruit_class")


def published_bases(root) -> set[str]:
    import pyarrow.parquet as pq

    from fruit_assets.storage.schemas import pca_fingerprint_of

    output = root / "output" / "resultats_features_parquet"
    files = [os.path.join(d, f) for d, _s, names in os.walk(output) for f in names if f.endswith(".parquet")]
    return {pca_fingerprint_of(pq.read_schema(f)) for f in files}


def current_basis(root) -> str:
    from fruit_assets.pca import load_pca

    return load_pca((root / "models" / "pca" / "pca.npz").read_bytes()).fingerprint


def run_on_a_terminal(args, env_extra, timeout=600) -> str:
    """What a user sees in a terminal: the command's stdout and stderr on a pseudo-terminal."""
    import pty
    import select

    main, secondary = pty.openpty()
    process = subprocess.Popen(args, env={**os.environ, **env_extra, "COLUMNS": "120"},
                               stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], timeout)
        if not ready:
            process.kill()
            break
        try:
            data = os.read(main, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(main)
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


def test_instance_settings_are_the_repository_dagster_yaml_and_never_overwritten(tmp_path, monkeypatch):
    from fruit_assets.cli.console import instance_yaml, prepare_dagster_home

    repository_yaml = open(os.path.join(REPO, "dagster.yaml")).read()
    assert instance_yaml() == repository_yaml  # the packaged copy is the repository's file

    fresh = tmp_path / "fresh" / "home"
    monkeypatch.setenv("DAGSTER_HOME", str(fresh))
    said = []
    assert prepare_dagster_home(said.append) == str(fresh)
    assert (fresh / "dagster.yaml").read_text() == repository_yaml and said

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    monkeypatch.setenv("DAGSTER_HOME", str(existing))
    prepare_dagster_home(said.append)
    assert (existing / "dagster.yaml").read_text() == "telemetry:\n  enabled: true\n"


def sensor_ticks(ui) -> list[dict]:
    query = ('{ sensorOrError(sensorSelector: {repositoryLocationName: "fruit_assets", '
             'repositoryName: "__repository__", sensorName: "new_uploads_sensor"}) '
             '{ ... on Sensor { sensorState { ticks(limit: 10) { status skipReason runKeys } } } } }')
    return ui.graphql(query)["sensorOrError"]["sensorState"]["ticks"]


def wait_for_ticks(ui, count: int, timeout: float = 180) -> list[dict]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        ticks = [t for t in sensor_ticks(ui) if t["status"] in ("SKIPPED", "SUCCESS", "FAILURE")]
        if len(ticks) >= count:
            return ticks
        assert time.monotonic() < deadline, f"only {len(ticks)} sensor tick(s) after {timeout} s"
        time.sleep(2)


def ui_stays_quiet_until_a_class_changes(home: str, env: dict, data_root) -> None:
    import shutil

    from dagster import DagsterInstance

    from fruit_assets_tests.harness.dagster_dev import DagsterDev

    with DagsterInstance.from_config(home) as instance:
        runs_before = len(instance.get_runs())
    ui = DagsterDev(home, env).start(via_cli=True)
    try:
        [first] = wait_for_ticks(ui, 1)
        assert first["status"] == "SKIPPED" and first["runKeys"] == [], first
        with DagsterInstance.from_config(home) as instance:
            assert len(instance.get_runs()) == runs_before  # nothing marked "materializing"
        banana = data_root / "Training" / "Banana"
        shutil.copy(banana / "1_100.jpg", banana / "uploaded_100.jpg")
        second = wait_for_ticks(ui, 2, timeout=120)[0]  # newest first
        assert second["status"] == "SUCCESS" and len(second["runKeys"]) == 1, second
        assert second["runKeys"][0].startswith("Banana@"), second
    finally:
        ui.stop()


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", ["copy@reduced_features:2", "switched@reduced_features"])
def test_materialize_killed_mid_commit_leaves_a_complete_version_and_the_next_run_repairs_it(
        tmp_path, sample_source, weights_file, checkpoint):
    """A `fruit-assets materialize` SIGKILLed in the middle of publishing the new features: the
    public reader returns the previous table (killed before the switch) or the new one (after), whole;
    the next materialize, with no person in between, leaves the folder equal to the public reader's
    table, which equals a from-scratch run over the same tree."""
    import shutil

    import fruit_assets

    data, home = tmp_path / "data", tmp_path / "home"
    shutil.copytree(os.path.join(sample_source, "Training"), data / "Training")
    env = {"FRUIT_DATA_URI": str(data), "FRUIT_MODEL_WEIGHTS": weights_file, "SPARK_MASTER": "local[2]",
           "FRUIT_PCA_VARIANCE": "0.9", "DAGSTER_HOME": str(home)}
    assert run([f"{BIN}/fruit-assets", "materialize", "-q"], env).returncode == 0
    before = fruit_assets.read_reduced_features(str(data))

    for index in range(3):  # new images in one class: a new PCA basis, every class re-projected
        (data / "Training" / "Banana" / f"new_{index}.jpg").write_bytes(fresh_jpeg(100 + index))
    killed = run([f"{BIN}/fruit-assets", "materialize", "-q"], {**env, "FRUIT_PUBLICATION_KILL_AT": checkpoint})
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]

    seen = fruit_assets.read_reduced_features(str(data))
    paths = seen["path"].to_pylist()
    assert len(paths) == len(set(paths))
    if checkpoint.startswith("switched"):
        assert seen.num_rows == before.num_rows + 3
    else:  # before this run's first switch of the features: the previous table, whole
        assert sorted(paths) == sorted(before["path"].to_pylist())

    # The dead writer's intent protects what it left until its lease runs out (a live writer that
    # stalled looks the same from outside); the next run after that repairs everything.
    time.sleep(float(os.environ["FRUIT_PUBLICATION_LEASE_SECONDS"]) + 1.5)
    repaired = run([f"{BIN}/fruit-assets", "materialize", "-q"], env)
    assert repaired.returncode == 0, repaired.stdout[-3000:] + repaired.stderr[-3000:]
    published = fruit_assets.read_reduced_features(str(data))
    plain = ds.dataset(str(data / "output" / "resultats_features_parquet")).to_table()
    assert sorted(plain["path"].to_pylist()) == sorted(published["path"].to_pylist())
    assert published.num_rows == before.num_rows + 3

    fresh, fresh_home = tmp_path / "fresh", tmp_path / "fresh_home"
    shutil.copytree(data / "Training", fresh / "Training")
    assert run([f"{BIN}/fruit-assets", "materialize", "-q"],
               {**env, "FRUIT_DATA_URI": str(fresh), "DAGSTER_HOME": str(fresh_home)}).returncode == 0
    reference = fruit_assets.read_reduced_features(str(fresh))
    by_name = lambda table: {p.split("/Training/")[1]: f for p, f in zip(table["path"].to_pylist(),
                                                                         table["features"].to_pylist())}
    ours, theirs = by_name(published), by_name(reference)
    assert ours.keys() == theirs.keys()
    import numpy as np
    assert max(abs(np.array(ours[k]) - np.array(theirs[k])).max() for k in ours) < 1e-4
