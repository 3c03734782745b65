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
    # eager()'s "a dependency was newly updated, not by a run that also targets this asset",
    # with "updated" read as "its data version changed"; the rest of eager() is Dagster's own.
    data_changed = (
        AutomationCondition.data_version_changed() & ~AutomationCondition.executed_with_root_target()
    ).with_label("data_version_changed_without_root")
    return (
        AutomationCondition.eager()
        .replace("newly_updated_without_root", data_changed)
        .with_label("eager_on_changed_data")
    )
