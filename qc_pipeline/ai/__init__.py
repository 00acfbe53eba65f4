"""The inference runtime of the AI models: registry, manifests and pins, preprocessing, feature
extraction and scoring through onnxruntime, what the flow and the checks import at judging time.

Training, evaluation, model cards and site validation live in :mod:`qc_pipeline.modeltools`, which
imports this package and is never imported by it (``tests/ai/test_import_layers.py``).
"""
