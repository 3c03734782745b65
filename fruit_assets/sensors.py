"""New uploads under Training/ -> new partitions and runs for exactly the classes that changed."""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from fruit_assets.assets import image_embeddings, pca_model, raw_images, reduced_features
from fruit_assets.steps.changes import (
    MassDeletionError,
    check_deletions,
    class_fingerprints,
    decode_cursor,
    diff,
    encode_cursor,
    spanning_range,
)
from fruit_assets.partitions import fruit_class_partitions, registered_classes
from fruit_assets.resources import FruitStorage


def _shorten(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


@sensor(
    name="new_uploads_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    asset_selection=[raw_images, image_embeddings, pca_model],
    description="Lists Training/ once per tick; registers new classes and requests runs of "
    "raw_images + image_embeddings (one run, from the first to the last class whose images were added, "
    "modified or deleted; the unchanged ones in between are left as published); a class "
    "folder deleted loses its partition, and pca_model (which removes its outputs) runs.",
)
def new_uploads_sensor(context: SensorEvaluationContext, storage: FruitStorage):
    layout = storage.layout
    # The cursor (one fingerprint per class, in Dagster's storage) survives daemon restarts.
    previous = decode_cursor(context.cursor)
    # First tick (no cursor): a class whose objects are exactly what its last raw_images manifest
    # recorded was materialized already (by the CLI, say), so it is not requested again.
    current, objects, unchanged = class_fingerprints(layout, against_manifests=not previous)
    if not previous and unchanged:
        previous = {fruit_class: current[fruit_class] for fruit_class in unchanged}
        context.log.info(f"first tick: {len(unchanged)} class(es) unchanged since their last manifest")
    changes = diff(previous, current)
    registered = registered_classes(context.instance)
    known = set(registered)
    gone = sorted((set(changes.deleted) | known) - set(current))
    try:
        check_deletions(gone, len(set(previous) | known), sorted(current), storage.allow_mass_deletion, layout.training)
    except MassDeletionError as error:
        # The cursor stays as it was: the same refusal every tick until Training/ is back or a
        # person allows the deletion, never a silent wipe.
        context.log.error(str(error))
        return SensorResult(skip_reason=SkipReason(str(error)), cursor=context.cursor)
    to_register = [c for c in sorted(current) if c not in known]
    ordered = registered + to_register

    run_requests = []
    for first, last in spanning_range(changes.to_run, ordered):
        block = ordered[ordered.index(first): ordered.index(last) + 1]
        run_requests.append(
            RunRequest(
                # Same classes in the same state -> same key: Dagster never launches it twice,
                # even if the cursor were lost.
                run_key="|".join(f"{c}@{current[c]}" for c in block),
                asset_selection=[raw_images.key, image_embeddings.key],
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                    "fruit_assets/trigger": "new_uploads_sensor",
                },
            )
        )
    context.log.info(
        f"{objects} objects in {len(current)} classes: {len(changes.new)} new, "
        f"{len(changes.changed)} changed, {len(changes.deleted)} deleted; {len(run_requests)} run(s) requested"
        + (f" for {_shorten(changes.to_run)}" if changes.to_run else "")
    )
    partition_requests = [fruit_class_partitions.build_add_request(to_register)] if to_register else []
    if gone:
        context.log.info(f"class folder(s) deleted under {layout.training}: {', '.join(gone)}: their partitions "
                         "are deleted, and pca_model removes their outputs before it refits")
        if known & set(gone):
            partition_requests.append(fruit_class_partitions.build_delete_request(sorted(known & set(gone))))
        run_requests.append(RunRequest(run_key="removed|" + "|".join(gone), asset_selection=[pca_model.key],
                                       tags={"fruit_assets/trigger": "new_uploads_sensor"}))
    if not run_requests and not partition_requests:
        return SensorResult(skip_reason=SkipReason(f"no change in {len(current)} classes ({objects} objects)"),
                            cursor=encode_cursor(current))
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=partition_requests,
        cursor=encode_cursor(current),
    )


# Carries new embeddings downstream (pca_model, then every reduced_features partition) through
# the assets' eager automation conditions. Emits backfills, so the single-run backfill policy holds.
downstream_automation_sensor = AutomationConditionSensorDefinition(
    "downstream_automation_sensor",
    target=AssetSelection.assets(pca_model, reduced_features),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    emit_backfills=True,
)
