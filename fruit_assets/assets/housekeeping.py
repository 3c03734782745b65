from dagster import AssetExecutionContext

from fruit_assets.layout import DataLayout
from fruit_assets.steps.staging import sweep_abandoned_staging


def sweep_staging_of_finished_runs(context: AssetExecutionContext, layout: DataLayout) -> None:
    """A run killed mid-write leaves ``_staging/<its run id>/``; once Dagster has marked that run
    finished (run monitoring does, for a dead run pod), the next writing step deletes it."""

    def is_finished(run_id: str) -> bool:
        if run_id == context.run_id:
            return False
        run = context.instance.get_run_by_id(run_id)
        return run is not None and run.is_finished

    swept = sweep_abandoned_staging(layout, is_finished)
    if swept:
        context.log.info(f"deleted the staging folders of {len(swept)} finished run(s): {', '.join(swept)}")
