"""The real services the tests start (S3 server, Spark standalone cluster, PostgreSQL, container
image, `dagster dev`) and the independent reference implementation. Not tests themselves."""

import os

# The repository's root: its dagster.yaml, workspace.yaml, docker/, helm-values/ are test inputs.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
