"""Block-sparse attention kernels; :func:`bigbird.attention.select_kernel` picks one per call."""
