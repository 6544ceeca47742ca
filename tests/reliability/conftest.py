"""Fixtures of the reliability suites: the transfer suite's server with small parts, and files."""

from __future__ import annotations

from transfer.conftest import make_file, parts_server

__all__ = ["make_file", "parts_server"]
