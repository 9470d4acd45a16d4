"""Data pipelines: real corpora fetched from packages and converted to the corpus parquet format."""
