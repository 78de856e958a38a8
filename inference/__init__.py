"""Hearth's AI screening module: small image classifiers and a clinical risk score.

Inference runs as small steps (monai-deploy style): select the input, pre-process it
(:mod:`inference.preprocess`), predict with a network built by the MONAI factory
(:mod:`inference.networks`) from a model chosen in the registry (:mod:`inference.registry`),
then post-process (temperature-scaled probabilities and a decision rule, :mod:`inference.predict`).

Shipped models (see ``docs/models.md``, the model card):

* ``skin`` — 7-class dermoscopy lesion classifier (HAM10000 classes, DermaMNIST order).
* ``pneumonia`` — chest X-ray normal / pneumonia classifier (PneumoniaMNIST).
* :mod:`inference.plco` — the PLCOm2012 six-year lung-cancer risk model (a formula, no weights).

Every output is decision support to be verified by a physician, never a diagnosis.
"""
