"""Benchmark harness for ssehub: load client, baselines and the one-command runner."""
