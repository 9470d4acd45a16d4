"""Tests of the Ray Serve HTTP service (serve/)."""
