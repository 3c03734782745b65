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
