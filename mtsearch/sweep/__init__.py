"""Sweeps: search spaces, the per-configuration objective shared by every backend, results."""
