"""The subscription topics, one module each declaring ``TOPIC = Topic(...)`` (``registry.py``
finds them; docs/extending.md "Add a subscription topic")."""
