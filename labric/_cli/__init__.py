"""The API subcommands of ``labric`` (files, sync, datasets, jobs); registered by :mod:`labric.cli`.

Each module adds its parsers through one ``add_*`` function and runs its work on a fresh event
loop with an :class:`~labric.AsyncLabric` built from the environment; what they share (exit codes,
error lines, ``--json`` output, progress) is in :mod:`labric._cli._common`.
"""
