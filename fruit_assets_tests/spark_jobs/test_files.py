"""The file-job scaffold on a real local[2] Spark: every work item once, in order, bounded slices."""

from fruit_assets.spark_jobs.files import collect_over_files, file_task_slices, over_files

WORK = [("Banana", "file:///d/part-2"), ("Apple Red 1", "file:///d/part-9"), ("Banana", "file:///d/part-1"),
        ("Pepper Red", "file:///d/part-0"), ("Apple Red 1", "file:///d/part-3"), ("Kiwi", "file:///d/part-5"),
        ("Banana", "file:///d/part-7")]


def jobs_in_group(sc, group: str, action) -> list[int]:
    sc.setJobGroup(group, "fruit_assets_tests", interruptOnCancel=False)
    try:
        action()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    return list(sc.statusTracker().getJobIdsForGroup(group))


def test_task_slices_are_two_per_core_never_more_than_the_files_and_at_least_one(spark):
    sc = spark.sparkContext
    per_core = 2 * sc.defaultParallelism
    assert sc.defaultParallelism == 2
    assert [file_task_slices(sc, n) for n in (0, 1, 3, per_core, per_core + 1, 10_000)] == [
        1, 1, 3, per_core, per_core, per_core]


def test_every_item_is_processed_exactly_once_in_sorted_order(spark):
    def task(items):
        for fruit_class, uri in items:
            yield fruit_class, uri, len(uri)

    rows = collect_over_files(spark, WORK, task)
    assert [(c, u) for c, u, _n in rows] == sorted(WORK)
    assert all(n == len(u) for _c, u, n in rows)
    assert over_files(spark, WORK, task).getNumPartitions() == file_task_slices(spark.sparkContext, len(WORK))


def test_with_index_each_slice_gets_its_own_index(spark):
    def task(index, items):
        for item in items:
            yield index, item

    rows = collect_over_files(spark, WORK, task, with_index=True)
    assert [item for _i, item in rows] == sorted(WORK)
    indexes = [index for index, _item in rows]
    assert indexes == sorted(indexes)  # slices are consecutive runs of the sorted work
    assert set(indexes) == set(range(file_task_slices(spark.sparkContext, len(WORK))))


def test_an_rdd_to_reduce_instead_of_collect(spark):
    def task(items):
        yield sum(int(uri.rsplit("-", 1)[-1]) for _c, uri in items)

    assert over_files(spark, WORK, task).sum() == 2 + 9 + 1 + 0 + 3 + 5 + 7


def test_no_work_runs_no_job(spark):
    sc = spark.sparkContext

    def task(items):
        yield from items

    results = []
    assert jobs_in_group(sc, "files-no-work", lambda: results.append(collect_over_files(spark, iter([]), task))) == []
    assert results == [[]]
    assert len(jobs_in_group(sc, "files-some-work", lambda: collect_over_files(spark, WORK[:1], task))) == 1
