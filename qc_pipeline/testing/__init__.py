"""Helpers for tests and benchmarks (a real Orthanc on loopback). Not used by the pipeline itself."""
