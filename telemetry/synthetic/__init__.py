"""Generators of synthetic data in the shapes telemetry reads: the mission (challenge parquet), the
fleet (wide CSV) and the discharges (JSON). Nothing outside tests, benchmarks and the demo needs them."""
