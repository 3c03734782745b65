"""The deployment a user opens: `dagster dev` from workspace.yaml + dagster.yaml, driven through
Dagster's GraphQL API the way an external client would (webserver and daemon are real)."""

import os
import time

import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from fruit_assets_tests.harness import REPO

pytestmark = pytest.mark.slow

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def wait_for_run(client, run_id, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in TERMINAL:
            return status
        time.sleep(2)
    raise TimeoutError(f"run {run_id} still running after {timeout} s")


ARTIFACTS = os.environ.get("FRUIT_TEST_ARTIFACTS", os.path.join(REPO, "artifacts"))

RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"


def wait_for_all_runs(dagster_dev, expected: int, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = dagster_dev.graphql(RUNS)["runsOrError"]["results"]
        if len(runs) >= expected and all(r["status"] in TERMINAL for r in runs):
            return runs
        time.sleep(2)
    raise TimeoutError("runs did not finish")


def sensor_status(dagster_dev, name="new_uploads_sensor"):
    query = ('{ sensorOrError(sensorSelector: {repositoryLocationName: "fruit_assets", '
             f'repositoryName: "__repository__", sensorName: "{name}"}}) '
             '{ ... on Sensor { sensorState { status } } } }')
    return dagster_dev.graphql(query)["sensorOrError"]["sensorState"]["status"]


def materialize_in_ui(page, base_url, asset, partition, shots, name):
    page.goto(f"{base_url}/assets/{asset}")
    skip = page.get_by_role("button", name="Skip")  # "Join the Dagster community" on a fresh instance
    try:
        skip.click(timeout=5000)
    except Exception:  # noqa: BLE001 - the dialog only shows once per browser profile
        pass
    page.get_by_role("button", name="Materialize…").click()
    launch_dialog = page.get_by_text(f"Launch runs to materialize {asset}")
    confirm = page.get_by_role("button", name="Confirm")  # "upstream not materialized" warning
    for _ in range(20):
        if launch_dialog.count():
            break
        if confirm.count():
            confirm.click()
        page.wait_for_timeout(500)
    page.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name=partition).click()
    page.keyboard.press("Escape")
    page.screenshot(path=os.path.join(shots, f"{name}-launch-dialog.png"))
    page.get_by_role("button", name="Launch 1 run").click()


def test_materialize_a_partition_through_the_ui(dagster_dev):
    """Chromium clicks the UI's own buttons; fails (not skips) when Chromium is missing."""
    from playwright.sync_api import sync_playwright

    assert os.path.exists("/usr/bin/chromium"), "Chromium is required: apt-get install -y chromium (.ci/run does)"
    os.makedirs(ARTIFACTS, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-background-networking"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{dagster_dev.url}/asset-groups")
            page.get_by_role("button", name="Skip").click(timeout=20000)
            page.get_by_text("image_embeddings").first.wait_for(timeout=30000)
            page.screenshot(path=os.path.join(ARTIFACTS, "asset-graph.png"))

            materialize_in_ui(page, dagster_dev.url, "raw_images", "Pepper Red", ARTIFACTS, "raw_images")
            wait_for_all_runs(dagster_dev, 1)
            materialize_in_ui(page, dagster_dev.url, "image_embeddings", "Pepper Red", ARTIFACTS, "image_embeddings")
            runs = wait_for_all_runs(dagster_dev, 2)
            assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"]

            page.goto(f"{dagster_dev.url}/assets/image_embeddings?view=events&partition=Pepper%20Red")
            page.get_by_text("num_embedded").first.wait_for(timeout=30000)
            plot = page.locator('img[alt="images per class"]')
            if not plot.count():
                page.get_by_text("[Show Markdown]").first.click()
            plot.first.wait_for(timeout=15000)
            assert plot.first.evaluate("img => img.naturalWidth") > 100  # the PNG decoded in the browser
            page.screenshot(path=os.path.join(ARTIFACTS, "image_embeddings-metadata.png"), full_page=True)

            page.goto(f"{dagster_dev.url}/assets/image_embeddings?view=checks")
            for check in ("embeddings_are_1280_finite_floats", "one_row_per_image", "quarantine_rate"):
                # The list middle-truncates long names; the full name is visible in the detail pane.
                page.locator(f'text="{check}" >> visible=true').first.wait_for(timeout=30000)
            page.get_by_text("Passed").first.wait_for(timeout=30000)
            page.screenshot(path=os.path.join(ARTIFACTS, "image_embeddings-checks.png"), full_page=True)

            # The sensor is switched on, then off again, with its switch on the sensor's page.
            for wanted in ("RUNNING", "STOPPED"):
                page.goto(f"{dagster_dev.url}/locations/fruit_assets/sensors/new_uploads_sensor")
                page.get_by_text("new_uploads_sensor").first.wait_for(timeout=30000)
                switch = page.get_by_role("checkbox").first
                switch.wait_for(state="attached", timeout=30000)
                switch.evaluate("el => el.click()")  # the styled switch hides its input
                deadline = time.monotonic() + 30
                while sensor_status(dagster_dev) != wanted:
                    assert time.monotonic() < deadline, f"sensor did not become {wanted}"
                    page.wait_for_timeout(500)
                page.screenshot(path=os.path.join(ARTIFACTS, f"sensor-{wanted.lower()}.png"))

            page.goto(f"{dagster_dev.url}/assets/image_embeddings?view=partitions")
            page.get_by_text("Pepper Red").first.wait_for(timeout=30000)
            page.wait_for_timeout(1500)
            page.screenshot(path=os.path.join(ARTIFACTS, "image_embeddings-partitions.png"))
        except Exception:
            page.screenshot(path=os.path.join(ARTIFACTS, "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_graphql_client_launches_a_partitioned_run(dagster_dev):
    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev.port)
    run_id = client.submit_job_execution(
        "embed_classes", repository_location_name="fruit_assets", tags={"dagster/partition": "Banana"}
    )
    assert wait_for_run(client, run_id) == "SUCCESS"
    assert os.listdir(os.path.join(dagster_dev.data_root, "embeddings", "fruit_class=Banana"))
    # (other classes may have runs too: the UI test switched the sensor on for a moment)
    run = dagster_dev.graphql(
        'query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }', {"id": run_id}
    )["runOrError"]
    assert {"key": "dagster/partition", "value": "Banana"} in run["tags"]
    with pytest.raises(DagsterGraphQLClientError):
        client.submit_job_execution("no_such_job", repository_location_name="fruit_assets")


BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""


def test_backfill_of_every_class_is_a_single_run(dagster_dev):
    launched = dagster_dev.graphql(BACKFILL, {"params": {
        "assetSelection": [{"path": ["raw_images"]}, {"path": ["image_embeddings"]}],
        "allPartitions": True,
    }})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 600
    while True:
        state = dagster_dev.graphql(BACKFILL_STATUS, {"id": launched["backfillId"]})
        status = state["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED", "CANCELING", "FAILING"):
            break
        assert time.monotonic() < deadline, "backfill did not finish"
        time.sleep(3)
    runs = state["runsOrError"]["results"]
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (status, runs)
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"  # 3 classes, one Spark application
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == ("Apple Red 1", "Pepper Red")
    for fruit_class in ("Apple Red 1", "Banana", "Pepper Red"):
        assert os.listdir(os.path.join(dagster_dev.data_root, "embeddings", f"fruit_class={fruit_class}"))


def test_two_runs_of_one_class_at_once_take_turns_and_leave_one_version(dagster_dev):
    """The sensor's run and a manual run of the same class, launched together: the data-root pool
    (limit 1 in dagster.yaml) lets one step at a time write, and the class ends with one version."""
    import pyarrow.dataset as ds
    from dagster import DagsterEventType, DagsterInstance

    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev.port)
    run_ids = [
        client.submit_job_execution("embed_classes", repository_location_name="fruit_assets", tags=tags)
        for tags in ({"dagster/partition": "Pepper Red", "fruit_assets/trigger": "new_uploads_sensor"},
                     {"dagster/partition": "Pepper Red"})
    ]
    assert [wait_for_run(client, run_id) for run_id in run_ids] == ["SUCCESS", "SUCCESS"]

    steps = []
    with DagsterInstance.from_config(dagster_dev.home) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        for run_id in run_ids:
            started = {}
            for record in instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}):
                if record.dagster_event.event_type == DagsterEventType.STEP_START:
                    started[record.step_key] = record.timestamp
                else:
                    steps.append((started[record.step_key], record.timestamp, run_id, record.step_key))
    assert len(steps) == 4  # raw_images and image_embeddings in each run
    steps.sort()
    for earlier, later in zip(steps, steps[1:]):
        assert earlier[1] <= later[0], f"{earlier} overlaps {later}"

    table = ds.dataset(os.path.join(dagster_dev.data_root, "embeddings", "fruit_class=Pepper Red"), format="parquet").to_table()
    paths = table["path"].to_pylist()
    assert len(paths) == 12 and len(set(paths)) == 12


def wait_for_backfill(dagster_dev, backfill_id, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        state = dagster_dev.graphql(BACKFILL_STATUS, {"id": backfill_id})
        status = state["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED", "CANCELING", "FAILING"):
            return status, state["runsOrError"]["results"]
        assert time.monotonic() < deadline, "backfill did not finish"
        time.sleep(3)


def test_a_graphql_launch_of_pca_model_and_one_partition_publishes_one_basis_for_every_class(dagster_dev, weights_file):
    """A client refits the PCA and asks for one class's features only (after a new image in it):
    every published row comes out on the new basis, equal to the reference projection."""
    import numpy as np
    from dagster import DagsterInstance, materialize

    from fruit_assets import read_reduced_features, read_embeddings
    from fruit_assets.assets import image_embeddings, raw_images
    from fruit_assets.pca import load_pca
    from fruit_assets.storage.versions import current_version
    from fruit_assets_tests.assets.test_assets import ALL_ASSETS, resources, run_graph
    from fruit_assets_tests.harness.images import fresh_jpeg

    def backfill(assets, **partitions):
        launched = dagster_dev.graphql(BACKFILL, {"params": {
            "assetSelection": [{"path": [a]} for a in assets], **partitions}})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        status, runs = wait_for_backfill(dagster_dev, launched["backfillId"])
        assert status in ("COMPLETED", "COMPLETED_SUCCESS") and all(r["status"] == "SUCCESS" for r in runs), (status, runs)

    # The state before the client's request, made in this process on the server's instance (each
    # backfill through the daemon costs its ~30 s iterations; what is under test is the last one).
    with DagsterInstance.from_config(dagster_dev.home) as instance:
        run_graph(instance, dagster_dev.data_root, weights_file)
        first_basis = load_pca(open(os.path.join(dagster_dev.data_root, "models", "pca", "pca.npz"), "rb").read()).fingerprint
        with open(os.path.join(dagster_dev.data_root, "Training", "Banana", "graphql_new.jpg"), "wb") as handle:
            handle.write(fresh_jpeg(77))
        embedded = materialize(ALL_ASSETS, selection=[raw_images, image_embeddings], partition_key="Banana",
                               instance=instance, resources=resources(dagster_dev.data_root, weights_file))
        assert embedded.success
    backfill(["pca_model", "reduced_features"], partitionNames=["Banana"])

    model = load_pca(open(os.path.join(dagster_dev.data_root, "models", "pca", "pca.npz"), "rb").read())
    assert model.fingerprint != first_basis
    features = read_reduced_features(dagster_dev.data_root)
    embeddings = read_embeddings(dagster_dev.data_root)
    assert features.num_rows == embeddings.num_rows == 37
    assert set(features["fruit_class"].to_pylist()) == {"Apple Red 1", "Banana", "Pepper Red"}
    lengths = {len(v) for v in features["features"].to_pylist()}
    assert lengths == {model.k}
    assert {entry["pca"] for entry in current_version(dagster_dev.data_root).made_from.values()} == {model.fingerprint}
    by_path = dict(zip(embeddings["path"].to_pylist(), embeddings["embedding"].to_pylist()))
    vectors = np.array([by_path[p] for p in features["path"].to_pylist()], dtype=np.float64)
    reference = (vectors - model.mean) @ model.components.T
    np.testing.assert_allclose(np.array(features["features"].to_pylist()), reference, rtol=1e-4, atol=1e-4)
