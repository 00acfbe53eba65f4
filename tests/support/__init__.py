"""Helpers for the tests, the benchmarks and the fuzzer: a real Orthanc on loopback, generated bad inputs.

Not part of the installed package: the pipeline never imports them. Benchmarks and the fuzzer run from
a checkout (the repository root on the path)."""
