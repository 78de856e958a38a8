"""Hearth's AI screening module: small image classifiers and a clinical risk score.

Inference runs as small steps (monai-deploy style): select the input, pre-process it
(:mod:`inference.preprocess`), predict with a network built by the MONAI factory
(:mod:`inference.networks`) from a model chosen in the registry (:mod:`inference.registry`),
then post-process (temperature-scaled probabilities and a decision rule, :mod:`inference.predict`).

Each model is one module of :mod:`inference.models` declaring ``MODEL`` (:mod:`inference.spec`);
the registry discovers them (see ``docs/models.md``, the model card, and docs/extending.md):

* ``skin`` — 7-class dermoscopy lesion classifier (HAM10000 classes, DermaMNIST order).
* ``pneumonia`` — chest X-ray normal / pneumonia classifier (PneumoniaMNIST).
* ``plcom2012`` — the PLCOm2012 six-year lung-cancer risk model (a formula, no weights;
  :mod:`inference.plco`).

Every output is decision support to be verified by a physician, never a diagnosis.
"""
