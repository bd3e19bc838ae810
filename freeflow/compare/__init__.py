"""Checking a sampler: NUTS references (``reference/``), baselines (normflows VI, SVGD) and one
comparison report for all of them (``run.compare`` → ``report.Report``)."""
from . import reference
from .report import MethodResult, Report
from .run import compare

__all__ = ["compare", "Report", "MethodResult", "reference"]
