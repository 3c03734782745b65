from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from typing import ClassVar

from dagster import ConfigurableResource, InitResourceContext, ResourceDependency
from pydantic import Field, PrivateAttr

from fruit_assets.layout import DataLayout
from fruit_assets.resources.env import resolved
from fruit_assets.spark_jobs.history import (
    ApplicationFacts,
    application_facts,
    discard_event_log,
    local_event_log_dir,
    publish_event_logs,
)
from fruit_assets.spark_jobs.kubernetes import KubernetesSettings, kubernetes_conf
from fruit_assets.spark_jobs.run_conf import check_sizing_value, run_sizing_conf
from fruit_assets.spark_jobs.session import SparkDeployment, SparkSettings, build_spark_context, session_on, stop_spark

# Spark applications (their SparkContexts) this process already runs and lends to the runs it
# executes: `fruit-assets materialize` keeps one application (and each worker's model) across its
# runs. Dagster builds a run's resource anew from its config, so a context cannot travel on the
# resource instance the command passes; it is lent here, explicitly, for the duration of the runs.
_LENT_CONTEXTS: list = []


@contextmanager
def lend_context(context):
    """Runs executed in this process inside the block use ``context`` (or what the Future
    ``context`` gives, waited for when a run first asks: the runs' own start overlaps Spark's)
    when their master is its master, and leave it running when they end (its owner stops it)."""
    _LENT_CONTEXTS.append(context)
    try:
        yield context
    finally:
        _LENT_CONTEXTS.remove(context)


class SparkResource(ConfigurableResource):
    """The run's Spark application: ``local[*]``, ``spark://host:port`` or ``k8s://...`` (client
    mode). ``get_context`` is what the product's assets use (its jobs are RDDs of file work items);
    ``get_session`` gives a Spark SQL session on the same context to assets that want DataFrames.

    Our own resource rather than dagster-pyspark's PySparkResource: that one defines no teardown
    (a run pod would leave executors behind) and cannot reuse a context the caller already owns.

    Anyone who can launch a run can edit this resource's config in the launchpad, so the config is
    only what a run may size: ``conf`` (the spark.* keys on run_conf.RUN_CONFIG_SPARK_KEYS; any
    other key fails the run at resource init, before Spark starts) and the ``k8s_executor_*``
    fields. Where Spark runs and as whom (master, namespace, service account, executor image,
    driver pod, the standalone cluster's secret) is ``deployment``, a ``SparkDeployment`` read from
    the process environment: the run pod's spec on Kubernetes, ``SPARK_MASTER`` for a standalone
    cluster, nothing for ``local[*]``. Dagster keeps a resource dependency out of the config schema,
    so a run config naming any of these fails validation before the run is created. (Checking config
    fields against the environment at init would refuse them too, but the launchpad would still
    offer them, and an unset variable would leave nothing to compare with.) Code may pin deployment
    values over the environment: ``SparkResource(master="local[2]")`` in tests, the CLI's master.
    """

    deployment: ResourceDependency[SparkDeployment]
    # Not config: run config could fill it from any of the run pod's variables ({env: ...}), and the
    # name is shown in Spark's UIs and the History Server.
    app_name: ClassVar[str] = "fruit_assets"
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="Sizing only (memory, cores, executor counts, partitions): "
        "spark.* keys outside run_conf.RUN_CONFIG_SPARK_KEYS fail the run.",
    )
    data_uri: str = Field(
        default="",
        description="FRUIT_DATA_URI: the event log of every application goes to <root>/spark-events/ "
        "when its application stops (empty: no event log).",
    )
    # k8s:// masters only: executor pod size and count.
    k8s_executor_cores: int = 2
    k8s_executor_memory: str = "1g"
    k8s_max_executors: int = 10

    _context = PrivateAttr(default=None)
    _owned = PrivateAttr(default=False)

    def __init__(self, *, deployment: SparkDeployment | None = None, **values):
        # Dagster rebuilds the resource from its config at run init, passing ``deployment`` back.
        pinned = {name: resolved(values.pop(name)) for name in SparkDeployment.field_names() if name in values}
        deployment = replace(deployment or SparkDeployment.from_environ(), **pinned)
        # Checkers see ConfigurableResource's own, field-less __init__; pydantic's takes this class's fields.
        super().__init__(deployment=deployment, **values)  # pyright: ignore[reportCallIssue]

    @property
    def master(self) -> str:
        return self.deployment.master

    def get_context(self, on_context=None, borrow: bool = True):
        """The run's SparkContext (``on_context``: see build_spark_context; called only when this
        resource starts Spark). ``borrow=False``: never wait for a lent context; the context the
        CLI lends is the one this call is starting, so waiting for it would wait for itself."""
        if self._context is None:
            from pyspark import SparkContext

            # A lent context (the CLI's), else the process's (a test's or a notebook's): used, never
            # stopped, by a run whose master is theirs. A process has one SparkContext at most:
            # building a second would share, then stop, the same one.
            lent = [c.result() if isinstance(c, Future) else c for c in reversed(_LENT_CONTEXTS)] if borrow else []
            candidates = [*lent, SparkContext._active_spark_context]
            reusable = [
                context
                for context in candidates
                if context is not None and context._jsc is not None and context.master == self.master
            ]
            if reusable:
                self._context, self._owned = reusable[0], False
            else:
                self._context = build_spark_context(self.settings(), on_context)
                self._owned = True
        return self._context

    def get_session(self):
        """A Spark SQL session on the run's context (made on first use: the product's own assets
        need none)."""
        return session_on(self.get_context())

    def settings(self) -> SparkSettings:
        deployment, conf = self.deployment, {}
        if self.master.startswith("k8s://"):
            conf.update(
                kubernetes_conf(
                    KubernetesSettings(
                        namespace=deployment.k8s_namespace,
                        service_account=deployment.k8s_service_account,
                        executor_service_account=deployment.k8s_executor_service_account,
                        image=deployment.k8s_image,
                        driver_pod_name=deployment.k8s_driver_pod_name,
                        driver_pod_ip=deployment.k8s_driver_pod_ip,
                        executor_cores=self.k8s_executor_cores,
                        executor_memory=check_sizing_value("k8s_executor_memory", self.k8s_executor_memory),
                        max_executors=self.k8s_max_executors,
                    )
                )
            )
        conf.update(run_sizing_conf(self.conf))
        return SparkSettings(
            self.master,
            self.app_name,
            conf,
            event_log_dir=self._event_log_dir(),
            auth_secret_file=deployment.auth_secret_file,
            executor_wait_seconds=deployment.executor_wait(),
        )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Resource init, before any step can start Spark: a run config outside the allowlist (or an
        # incomplete Kubernetes deployment) fails the run here, with its one-line message.
        self.settings()

    def _root(self) -> str:
        return DataLayout.at(self.data_uri).root if self.data_uri else ""

    def _event_log_dir(self) -> str:
        return local_event_log_dir(self._root()) if self.data_uri else ""

    def application_facts(self) -> ApplicationFacts | None:
        """The running application's id, History Server link, executors and failed task attempts."""
        return application_facts(self._context) if self._context is not None else None

    def stop_application(self) -> None:
        """Stops the Spark application this resource started and carries its event log (and any a
        killed run left on this machine) to ``<root>/spark-events/``."""
        if self._context is not None and self._owned:
            try:
                stop_spark(self._context)
            finally:
                if self.data_uri:
                    publish_event_logs(self._event_log_dir(), self._root())
        self._context = None

    def discard_application(self) -> None:
        """Stops the Spark application this resource started for work that did not come
        (``fruit-assets materialize`` found nothing to run): its event log is removed, not carried
        to the root."""
        if self._context is not None and self._owned:
            application_id = self._context.applicationId
            try:
                stop_spark(self._context)
            finally:
                if self.data_uri:
                    discard_event_log(self._event_log_dir(), application_id)
        self._context = None

    @property
    def ui_url(self) -> str | None:
        return self._context.uiWebUrl if self._context is not None else None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.stop_application()
