"""Command line (``freeflow ...``): ``main.py`` builds the parser; one module per subcommand."""
from .main import build_parser, main

__all__ = ["main", "build_parser"]
