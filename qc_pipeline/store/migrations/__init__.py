"""Alembic migrations of the results database (run by ``qc_pipeline.store``; no alembic.ini)."""
