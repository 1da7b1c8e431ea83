"""Benchmarks: each prints a table and compares against a floor measured in
the same run (a ratio), because these machines are shared and noisy."""
