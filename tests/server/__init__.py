"""Tests of the local server (labric.server), over real sockets."""
