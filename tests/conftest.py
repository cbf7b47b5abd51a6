"""Shared test set-up: the helpers in ``model_defaults`` are importable from every test."""
