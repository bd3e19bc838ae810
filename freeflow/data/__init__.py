"""Data mode: a one-step generator fitted to samples instead of a density (``flow.DataFlow``),
driven by the sample-based drift in ``drift.py``."""
from .drift import VELOCITIES, DataDrift, sample_power_law
from .flow import DataFlow, data_default_settings

__all__ = ["DataFlow", "DataDrift", "data_default_settings", "VELOCITIES", "sample_power_law"]
