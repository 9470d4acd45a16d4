"""The batch scoring job: Ray Data over a parquet corpus (``bigbird batch``, ``python -m pipelines.batch``)."""
