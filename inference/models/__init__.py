"""Hearth's AI models, one module each (``skin.py``, ``pneumonia.py``, ``plcom2012.py``), each
exposing ``MODEL`` (:mod:`inference.spec`). :mod:`inference.registry` finds them; nothing else
lists them. Adding a model: docs/extending.md.
"""
