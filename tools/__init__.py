"""Measurement scripts run against a real ``python app.py`` server (not tests):

* ``python -m tools.latency``: start-to-ready, verdict and explanation latency;
* ``python -m tools.load``: concurrent clients, p50/p95, errors, lost requests, memory.

The hostile-input corpus generator stays with the tests that use it (``python -m tests.corpus``).
"""
