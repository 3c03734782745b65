"""The hourly housekeeping: what a dead publication left goes without waiting for the next
publication, through the Dagster job the schedule launches and through `fruit-assets recover`."""

from __future__ import annotations

import os
import subprocess
import sys

from fruit_assets.definitions import defs
from fruit_assets.resources import FruitStorage
from fruit_assets.schedules import tidy_publications_job, tidy_publications_schedule
from fruit_assets.storage import normalize_uri, open_store
from fruit_assets.storage.versions import current_version, publish
from fruit_assets_tests.harness import REPO
from fruit_assets_tests.storage.test_versions import plain_listing, stage_rows, wait_for_leases_to_run_out

DEAD_WRITER = (
    "import sys; sys.path.insert(0, {repo!r}); "
    "from fruit_assets_tests.storage.test_versions import stage_rows; from fruit_assets.storage.versions import publish; "
    "publish({root!r}, 'dead', {{'embeddings': {{'Apple': stage_rows({root!r}, 'dead', 'Apple', 'dead')}}}})"
)


def root_with_a_dead_writer(tmp_path) -> str:
    root = normalize_uri(str(tmp_path / "data"))
    publish(root, "first", {"embeddings": {"Apple": stage_rows(root, "first", "Apple", "first")}})
    killed = subprocess.run([sys.executable, "-c", DEAD_WRITER.format(repo=REPO, root=root)], capture_output=True,
                            env={**os.environ, "FRUIT_PUBLICATION_KILL_AT": "copy:2"}, timeout=120)
    assert killed.returncode == -9
    assert len(plain_listing(root)) == 4  # the dead writer's two copies beside the published files
    wait_for_leases_to_run_out()
    return root


def assert_tidy(root: str) -> None:
    assert plain_listing(root) == sorted(current_version(root).uris("embeddings"))
    assert list(open_store(root).list_objects(f"{root}/_publications/_pending")) == []


def test_the_schedule_runs_hourly_by_default_and_its_job_cleans_a_dead_publication(tmp_path):
    assert tidy_publications_schedule.cron_schedule == "17 * * * *"
    assert tidy_publications_schedule.default_status.value == "RUNNING"
    assert tidy_publications_schedule in defs.schedules and tidy_publications_schedule.job_name == "tidy_publications_job"
    root = root_with_a_dead_writer(tmp_path)
    result = tidy_publications_job.execute_in_process(resources={"storage": FruitStorage(data_uri=root)})
    assert result.success
    assert_tidy(root)


def test_fruit_assets_recover_cleans_a_dead_publication(tmp_path):
    root = root_with_a_dead_writer(tmp_path)
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fruit-assets"), "recover", root],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"{root}: 1 dead publication(s) recovered; files superseded more than 0 s ago deleted"
    assert_tidy(root)
