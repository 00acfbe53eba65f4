"""Prefect flows: thin @flow/@task wrappers around qc_pipeline (no checks or math here)."""
