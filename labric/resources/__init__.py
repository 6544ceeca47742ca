"""The API's resources, one module each (``files``, ``datasets``, ``jobs``, ...).

Each module holds one async class that a client exposes as an attribute (``client.files`` is an
:class:`~labric.resources.files.AsyncFiles`); the sync facade's twins in ``labric._sync`` are
generated from them.
"""
