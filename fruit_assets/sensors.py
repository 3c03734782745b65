"""New uploads under Training/ -> new partitions and runs for exactly the classes that changed."""

from dagster import (
    AddDynamicPartitionsRequest,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from fruit_assets.assets import image_embeddings, pca_model, raw_images, reduced_features
from fruit_assets.partitions import fruit_class_partitions, registered_classes
from fruit_assets.resources import FruitStorage
from fruit_assets.steps.classes import plan_classes, shown
from fruit_assets.steps.fingerprints import class_fingerprints, decode_cursor, diff, encode_cursor
from fruit_assets.steps.ghosts import known_classes
from fruit_assets.steps.run_ranges import spanning_ranges


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
    # The cursor (one fingerprint per class, in Dagster's storage) survives daemon restarts. It
    # tells what changed; which classes exist is the instance's and the data root's to say
    # (steps/classes.py), so a deletion made elsewhere is never taken for a new one.
    previous = decode_cursor(context.cursor)
    registered = registered_classes(context.instance)
    known = known_classes(layout, registered)
    # First tick (no cursor): a class whose objects are exactly what its last raw_images manifest
    # recorded was materialized already (by the CLI, say), so it is not requested again.
    listing = class_fingerprints(layout, against_manifests=not previous, keep=known)
    current = listing.fingerprints
    for invalid in listing.invalid:
        context.log.warning(f"class folder skipped under {layout.training}/ for its name: {invalid}")
    if not previous and listing.unchanged:
        previous = {fruit_class: current[fruit_class] for fruit_class in listing.unchanged}
        context.log.info(f"first tick: {len(listing.unchanged)} class(es) unchanged since their last manifest")
    plan = plan_classes(current, registered, known, storage.allow_mass_deletion, layout.training)
    changes = diff(previous, current)
    cursor = dict(current)
    if plan.refused:
        # Only the deletion is refused: new classes and changed ones still run, tick after tick the
        # same error is logged until Training/ is back or a person deletes them deliberately. The
        # cursor keeps the gone classes' fingerprints, so folders that come back unchanged (an
        # outage over) are not embedded again.
        context.log.error(plan.refused)
        cursor.update({c: previous[c] for c in plan.gone if c in previous})

    # Partitions of gone classes that stay registered (refused) split the runs' ranges; those
    # deleted now go before any run is launched (the daemon applies partition requests first).
    deregistered = set(plan.to_deregister)
    ordered = [c for c in registered if c not in deregistered] + plan.to_register
    run_requests = []
    for first, last in spanning_ranges(changes.to_run, ordered, barriers=set(registered) - set(current)):
        block = ordered[ordered.index(first) : ordered.index(last) + 1]
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
        f"{listing.objects} objects in {len(current)} classes: {len(changes.new)} new, "
        f"{len(changes.changed)} changed, {len(plan.gone)} deleted; {len(run_requests)} run(s) requested"
        + (f" for {_shorten(changes.to_run)}" if changes.to_run else "")
        + (
            f"; {len(listing.invalid)} class folder(s) skipped for their names: "
            f"{_shorten([shown(i.name, 40) for i in listing.invalid], 5)}"
            if listing.invalid
            else ""
        )
    )
    partition_requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = (
        [fruit_class_partitions.build_add_request(plan.to_register)] if plan.to_register else []
    )
    if plan.to_remove:
        gone = plan.to_remove
        context.log.info(
            f"class folder(s) deleted under {layout.training}: {', '.join(gone)}: their partitions "
            "are deleted, and pca_model removes their outputs before it refits"
        )
        if plan.to_deregister:
            partition_requests.append(fruit_class_partitions.build_delete_request(plan.to_deregister))
        run_requests.append(
            RunRequest(
                run_key="removed|" + "|".join(gone),
                asset_selection=[pca_model.key],
                tags={"fruit_assets/trigger": "new_uploads_sensor"},
            )
        )
    if not run_requests and not partition_requests:
        reason = plan.refused or f"no change in {len(current)} classes ({listing.objects} objects)"
        return SensorResult(skip_reason=SkipReason(reason), cursor=encode_cursor(cursor))
    return SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=partition_requests,
        cursor=encode_cursor(cursor),
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
