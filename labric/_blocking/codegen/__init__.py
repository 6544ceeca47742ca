"""The sync facade generator's parts; :mod:`labric._blocking.generate` is its entry point."""
