"""The deployment a user opens: `dagster dev` from workspace.yaml + dagster.yaml, driven through
Dagster's GraphQL API the way an external client would (webserver and daemon are real)."""

import os
import time

import pytest
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

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


def test_graphql_client_launches_a_partitioned_run(dagster_dev):
    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev.port)
    run_id = client.submit_job_execution(
        "embed_classes", repository_location_name="fruit_assets", tags={"dagster/partition": "Banana"}
    )
    assert wait_for_run(client, run_id) == "SUCCESS"
    assert os.listdir(os.path.join(dagster_dev.data_root, "embeddings", "fruit_class=Banana"))
    assert not os.path.exists(os.path.join(dagster_dev.data_root, "embeddings", "fruit_class=Pepper Red"))
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
