from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from fruit_assets.layout import DataLayout
from fruit_assets.spark_jobs.history import ApplicationFacts, application_facts, local_event_log_dir, publish_event_logs
from fruit_assets.spark_jobs.session import KubernetesSettings, SparkSettings, build_spark_session, kubernetes_conf


class SparkResource(ConfigurableResource):
    """The run's Spark session: ``local[*]``, ``spark://host:port`` or ``k8s://...`` (client mode).

    Our own resource rather than dagster-pyspark's PySparkResource: that one defines no teardown
    (a run pod would leave executors behind) and cannot reuse a session the caller already owns.
    """

    master: str = Field(default="local[*]", description="Spark master URL (SPARK_MASTER).")
    app_name: str = "fruit_assets"
    conf: dict[str, str] = Field(default_factory=dict, description="Extra spark.* settings; they win.")
    data_uri: str = Field(
        default="", description="FRUIT_DATA_URI: the event log of every application goes to <root>/spark-events/ "
                                "when its session stops (empty: no event log).")
    # k8s:// masters only (client mode from the run pod); fed by helm-values/ through the pod's env.
    k8s_namespace: str = Field(default="", description="SPARK_K8S_NAMESPACE")
    k8s_service_account: str = Field(default="", description="SPARK_K8S_SERVICE_ACCOUNT")
    k8s_image: str = Field(default="", description="SPARK_K8S_IMAGE: the executor image (= the run pod's)")
    k8s_driver_pod_name: str = Field(default="", description="POD_NAME (downward API)")
    k8s_driver_pod_ip: str = Field(default="", description="POD_IP (downward API)")
    k8s_executor_cores: int = 2
    k8s_executor_memory: str = "1g"
    k8s_max_executors: int = 10

    _session = PrivateAttr(default=None)
    _owned = PrivateAttr(default=False)

    def get_session(self):
        if self._session is None:
            from pyspark.sql import SparkSession

            # getActiveSession is per thread; a run executing on another thread than the one that
            # built the session (a test, a notebook) must still find it, not build and then stop it.
            active = SparkSession.getActiveSession() or SparkSession._instantiatedSession
            if active is not None and active._sc._jsc is not None and active.sparkContext.master == self.master:
                self._session, self._owned = active, False  # e.g. the CLI's, kept across runs
            else:
                self._session = build_spark_session(self.settings())
                self._owned = True
        return self._session

    def settings(self) -> SparkSettings:
        conf = {}
        if self.master.startswith("k8s://"):
            conf.update(kubernetes_conf(KubernetesSettings(
                namespace=self.k8s_namespace, service_account=self.k8s_service_account, image=self.k8s_image,
                driver_pod_name=self.k8s_driver_pod_name, driver_pod_ip=self.k8s_driver_pod_ip,
                executor_cores=self.k8s_executor_cores, executor_memory=self.k8s_executor_memory,
                max_executors=self.k8s_max_executors,
            )))
        conf.update(self.conf)
        return SparkSettings(self.master, self.app_name, conf, event_log_dir=self._event_log_dir())

    def _root(self) -> str:
        return DataLayout.at(self.data_uri).root if self.data_uri else ""

    def _event_log_dir(self) -> str:
        return local_event_log_dir(self._root()) if self.data_uri else ""

    def application_facts(self) -> ApplicationFacts | None:
        """The running application's id, History Server link, executors and failed task attempts."""
        return application_facts(self._session) if self._session is not None else None

    def stop_session(self) -> None:
        """Stops the session this resource built and carries its event log (and any a killed run left
        on this machine) to ``<root>/spark-events/``."""
        if self._session is not None and self._owned:
            try:
                self._session.stop()
            finally:
                if self.data_uri:
                    publish_event_logs(self._event_log_dir(), self._root())
        self._session = None

    @property
    def ui_url(self) -> str | None:
        return self._session.sparkContext.uiWebUrl if self._session is not None else None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.stop_session()
