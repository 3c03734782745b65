"""Housekeeping on a clock: what dead publications left and superseded files past their grace
period are removed within the hour, not only by the next publication (storage/versions.tidy).
It runs in a run pod, whose role may delete derived files; the code server's may not."""

from dagster import DefaultScheduleStatus, OpExecutionContext, ScheduleDefinition, job, op

from fruit_assets.resources import FruitStorage
from fruit_assets.storage.versions import grace_seconds, tidy


@op
def tidy_publications(context: OpExecutionContext, storage: FruitStorage) -> None:
    dead = tidy(storage.layout.root)
    context.log.info(
        f"{len(dead)} dead publication(s) recovered; files superseded more than {grace_seconds():.0f} s ago deleted"
    )


@job(description="Recovers dead publications and deletes superseded files past the grace period.")
def tidy_publications_job():
    tidy_publications()


# Safe beside a running publication: live writers' files are protected by their leases.
tidy_publications_schedule = ScheduleDefinition(
    job=tidy_publications_job, cron_schedule="17 * * * *", default_status=DefaultScheduleStatus.RUNNING
)
