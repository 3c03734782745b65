"""The Spark layer: distributes the pure functions of featurize/, pca/ and quality/. No Dagster.

Object I/O happens inside tasks through fruit_assets.storage (boto3 or local files), not through
Hadoop filesystems: the same code path serves file:// and s3:// (S3A jars are not assumed).
"""
