"""One writer per data root at a time.

Every asset writes (or reads whole) datasets under FRUIT_DATA_URI; two runs of the same class
(the sensor's and a manual one, say) must not interleave their commits. Dagster enforces this
across runs with a concurrency pool: dagster.yaml (and helm-values/) give unconfigured pools a
limit of 1, so the pool's steps run one at a time, whichever run they belong to. The commit
protocol stays safe without it (last writer wins, whole); the pool also keeps two Spark
applications from fighting over one laptop's cores.
"""

DATA_ROOT_POOL = "fruit_data_root"
