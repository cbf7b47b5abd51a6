"""asl-tal: temporal action localization with Action Sensitivity Learning (ASL, ICCV 2023)."""

__version__ = "0.1.0"
