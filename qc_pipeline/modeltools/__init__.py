"""Training and evaluation of the AI models: what ``qc-pipeline models`` train, evaluate, validate,
calibrate and export-labels run, and what the ``models`` extra (PyTorch, skl2onnx) is for.

Imports point one way: this package uses the inference runtime (:mod:`qc_pipeline.ai`: features,
preprocessing, registry, scoring) so that a model is trained and evaluated on exactly what the flow
computes; the runtime never imports this package, so judging a study loads no training code.
"""
