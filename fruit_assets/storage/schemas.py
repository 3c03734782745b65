import pyarrow as pa

MANIFEST = pa.schema(
    [
        ("path", pa.string()),
        ("fruit_class", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("mtime", pa.timestamp("ms", tz="UTC")),
    ]
)

EMBEDDINGS = pa.schema(
    [
        ("path", pa.string()),
        ("fruit_class", pa.string()),
        ("etag", pa.string()),
        ("embedding", pa.list_(pa.float32())),
    ]
)

QUARANTINE = pa.schema(
    [
        ("path", pa.string()),
        ("fruit_class", pa.string()),
        ("etag", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
    ]
)

REDUCED_FEATURES = pa.schema(
    [
        ("path", pa.string()),
        ("fruit_class", pa.string()),
        ("features", pa.list_(pa.float32())),
    ]
)

# Every reduced-features file says which PCA basis projected it (PcaModel.fingerprint).
PCA_KEY = b"fruit_assets.pca"


def reduced_features_schema(pca_fingerprint: str) -> pa.Schema:
    return REDUCED_FEATURES.with_metadata({PCA_KEY: pca_fingerprint.encode()})


def pca_fingerprint_of(schema: pa.Schema) -> str:
    """The basis a reduced-features file was projected with ('' for files written before bases were recorded)."""
    return (schema.metadata or {}).get(PCA_KEY, b"").decode()


# Every embeddings file says which engine and weights computed it: carry-forward reuses only rows
# of the current pair, so one partition never mixes engines or weights.
WEIGHTS_KEY = b"fruit_assets.weights"
ENGINE_KEY = b"fruit_assets.engine"


def embeddings_schema(engine: str, fingerprint: str) -> pa.Schema:
    return EMBEDDINGS.with_metadata({WEIGHTS_KEY: fingerprint.encode(), ENGINE_KEY: engine.encode()})


def embedding_model_tag(schema: pa.Schema) -> tuple[str, str]:
    """(engine, weights fingerprint) of an embeddings file; ("", "") for a file without the tags,
    which matches no model."""
    metadata = schema.metadata or {}
    return metadata.get(ENGINE_KEY, b"").decode(), metadata.get(WEIGHTS_KEY, b"").decode()
