"""Fixtures of the instruments tests: a server on a hand-driven clock, raw HTTP and clients."""

from _clocked import client, clock, server, session, wire

__all__ = ["client", "clock", "server", "session", "wire"]
