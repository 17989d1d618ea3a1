"""Benchmark suite: this project against the reference MapProxy 7.0.0 (docs/performance.md)."""
