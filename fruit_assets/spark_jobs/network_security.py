"""Authentication and encryption of Spark's traffic: the settings that turn them on, and the
standalone cluster's shared secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fruit_assets.errors import ConfigurationError

if TYPE_CHECKING:
    from fruit_assets.spark_jobs.session import SparkSettings

# The variable naming the file that holds a standalone cluster's shared secret, alone.
AUTH_FILE_VARIABLE = "FRUIT_SPARK_AUTH_SECRET_FILE"

# Driver <-> executor (and, standalone, <-> master and workers) traffic: mutual authentication with
# a shared secret, then AES on every RPC and block transfer. A standalone master and its workers
# must be started with the same settings (docs/operations.md). GCM, because the default CTR mode
# does not authenticate what it decrypts; auth engine version 2, the one Spark recommends (1 is
# kept for older peers); no fallback to SASL DIGEST-MD5, so a peer without AES is refused.
# spark.io.encryption.enabled (shuffle and spill files on executor disks) stays off: on Kubernetes
# those files live in the executor pod's emptyDir, gone with the pod, on volumes the platform
# encrypts at rest; encrypting them again costs CPU on every shuffle for no threat we have.
NETWORK_SECURITY_CONF = {
    "spark.authenticate": "true",
    "spark.network.crypto.enabled": "true",
    "spark.network.crypto.cipher": "AES/GCM/NoPadding",
    "spark.network.crypto.authEngineVersion": "2",
    "spark.network.crypto.saslFallback": "false",
}
# Where a standalone application's shared secret goes (Kubernetes: Spark generates it).
SHARED_KEY_SETTING = "spark.authenticate.secret"


def network_security_conf(settings: SparkSettings) -> dict[str, str]:
    """Authentication and encryption for the masters whose executors are across a network.

    ``local``: none, driver and executors are one JVM. ``k8s://``: on, with no secret here: Spark
    generates one per application and hands it to the executor pods it creates. ``spark://``: on
    when the cluster's secret file is set (the master and workers are started with the same
    secret; an application without it is refused by them), off for a cluster without one."""
    if settings.master.startswith("k8s://") or (settings.master.startswith("spark://") and settings.auth_secret_file):
        return dict(NETWORK_SECURITY_CONF)
    return {}


def read_auth_secret(path: str) -> str:
    """The standalone cluster's shared secret, from the file the deployment names (never logged)."""
    try:
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
    except OSError as error:
        raise ConfigurationError(
            f"{AUTH_FILE_VARIABLE}={path} cannot be read ({error.strerror}): it must name "
            "the file holding the Spark cluster's shared secret"
        ) from None
    if not secret:
        raise ConfigurationError(
            f"{AUTH_FILE_VARIABLE}={path} is empty: it must hold the Spark cluster's shared secret"
        )
    return secret
