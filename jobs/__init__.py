"""Distributed fine-tuning and pre-training jobs on Ray Train (a thin layer over ``bigbird``).

``jobs.settings`` (YAML -> pydantic), ``jobs.data`` (parquet -> windows through Ray Data),
``jobs.train_loop`` (the per-worker loop), ``jobs.finetune`` (the ``bigbird finetune`` command).
"""
