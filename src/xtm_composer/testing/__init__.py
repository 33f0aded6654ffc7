"""Test support shipped with the package: a simulated engine and platform for property tests and benchmarks."""
