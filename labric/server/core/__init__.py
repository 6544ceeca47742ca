"""What every resource of the local server is built on.

* :mod:`.app`: the aiohttp application (middlewares, and the resources' routes).
* :mod:`.declare`: how a route declares itself (method, path, scope, parameters, body,
  answers) and the JSON Schema building blocks of those declarations.
* :mod:`.routing`: :class:`~.routing.Router`, through which every declared route is added.
* :mod:`.validation`: the request checks a declaration implies (query parameters, JSON body).
* :mod:`.auth`: API keys, principals and scopes. :mod:`.idempotency`: ``Idempotency-Key``.
* :mod:`.http`: JSON answers, errors, request-field validation. :mod:`.paging`: cursors and
  ``Link``. :mod:`.fields`: request fields the record routes share.
* :mod:`.db`: the SQLite database and its migrations. :mod:`.records`: the metadata tables'
  data access (keys, organisations, files, parts, executions, stored responses).
* :mod:`.blobs`, :mod:`.uploads`, :mod:`.diskio`: file bytes on disk.
* :mod:`.signing`: storage URL signatures. :mod:`.faults`: fault injection.
* :mod:`.state`: what handlers share. :mod:`.datadir`: the data directory.

Nothing here imports a resource package except :mod:`.app`, which assembles them. This
package's ``__init__`` imports nothing, so its modules can import each other freely.
"""
