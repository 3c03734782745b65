from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from fruit_assets.spark_jobs.session import SparkSettings, build_spark_session


class SparkResource(ConfigurableResource):
    """The run's Spark session: ``local[*]``, ``spark://host:port`` or ``k8s://...`` (client mode).

    Our own resource rather than dagster-pyspark's PySparkResource: that one defines no teardown
    (a run pod would leave executors behind) and cannot reuse a session the caller already owns.
    """

    master: str = Field(default="local[*]", description="Spark master URL (SPARK_MASTER).")
    app_name: str = "fruit_assets"
    conf: dict[str, str] = Field(default_factory=dict, description="Extra spark.* settings; they win.")

    _session = PrivateAttr(default=None)
    _owned = PrivateAttr(default=False)

    def get_session(self):
        if self._session is None:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None and active.sparkContext.master == self.master:
                self._session, self._owned = active, False  # e.g. the CLI's, kept across runs
            else:
                self._session = build_spark_session(SparkSettings(self.master, self.app_name, dict(self.conf)))
                self._owned = True
        return self._session

    @property
    def ui_url(self) -> str | None:
        return self._session.sparkContext.uiWebUrl if self._session is not None else None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._session is not None and self._owned:
            self._session.stop()
        self._session = None
