"""The command line: one argparse tree (`shiftlens ...` = `python -m core ...`)."""

from core.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
