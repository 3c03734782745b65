"""Progress read from Spark's status tracker while a real job runs."""

import time

from fruit_assets.progress import Progress, Throttled, add_listener, remove_listener
from fruit_assets.spark_jobs.progress import JobProgress


def test_progress_line_says_done_total_rate_and_eta():
    text = Progress(done=250, total=1000, seconds=5.0).describe()
    assert text == "250/1000 images (25%), 50.0 images/s, elapsed 0:05, ETA 0:15"
    assert Progress(0, 10, 0.0).describe().endswith("ETA ?")


def test_throttle_passes_every_step_of_five_percent_or_ten_seconds_and_always_the_end():
    seen = []
    throttle = Throttled(lambda p: seen.append(p.done), every_seconds=3600, every_fraction=0.05)
    for done in range(0, 1001, 10):
        throttle(Progress(done, 1000, 1.0))
    assert seen[0] == 0 and seen[-1] == 1000
    assert all(b - a >= 50 for a, b in zip(seen, seen[1:-1]))
    assert len(seen) == 21


def test_job_progress_counts_finished_tasks_as_images(spark):
    sc = spark.sparkContext
    reports, listened = [], []
    add_listener(listened.append)
    try:
        sizes = [10] * 8  # 8 tasks of 10 "images", 2 at a time
        with JobProgress(sc, "progress-test", sizes, [reports.append], interval=0.05):
            sc.parallelize(range(8), 8).map(lambda i: time.sleep(0.4) or i).collect()
    finally:
        remove_listener(listened.append)
    done = [p.done for p in reports]
    assert done[0] == 0 and done[-1] == 80 and all(p.total == 80 for p in reports)
    assert done == sorted(done) and len(set(done)) >= 4  # several steps in between, never backwards
    assert [p.done for p in listened] == done  # the process's listeners (the CLI's bar) see the same
    # The job group is cleared afterwards: later jobs of this thread are not counted.
    assert sc.getLocalProperty("spark.jobGroup.id") is None
