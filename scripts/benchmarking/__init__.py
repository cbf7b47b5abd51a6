"""The sub-commands of ``scripts/benchmark.py``, one module each, and their shared parts."""
