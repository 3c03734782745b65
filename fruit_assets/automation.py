"""When the automation daemon carries new embeddings downstream.

``AutomationCondition.eager()`` requests an asset whenever a dependency was materialized, whatever
that materialization held: a re-run of image_embeddings over unchanged images, or a refit of
pca_model that gave the same basis, would request every reduced_features partition again. Our
assets record data versions (image_embeddings: its published files; pca_model: its basis), so the
condition here is eager's with one change: a dependency counts as updated when its data version
changed (or it is requested on the same tick), not merely when it was materialized. The steps
themselves also leave up-to-date classes alone (steps/reduce.py), for runs launched by hand.
"""

from dagster import AutomationCondition


def eager_on_changed_data() -> AutomationCondition:
    changed = AutomationCondition.any_deps_match(
        (AutomationCondition.data_version_changed() & ~AutomationCondition.executed_with_root_target()
         ).with_label("data_version_changed_without_root")
        | AutomationCondition.will_be_requested()
    ).with_label("any_deps_data_changed")
    return (
        AutomationCondition.in_latest_time_window()
        & (AutomationCondition.newly_missing() | changed).since_last_handled()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("eager_on_changed_data")
