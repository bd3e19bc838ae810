"""Baselines a user would otherwise pick, run through the same comparison report:
normflows reverse-KL VI (``vi.py``) and SVGD (``svgd.py``)."""
from .svgd import SVGDBaseline, fit_svgd
from .vi import VIBaseline, fit_vi

__all__ = ["VIBaseline", "fit_vi", "SVGDBaseline", "fit_svgd"]
