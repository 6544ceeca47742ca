"""Files on the local server: listing, metadata, uploads and the signed storage routes.

* :mod:`.routes`: listing, metadata, deletion, the one-request multipart upload, content.
* :mod:`.signed`: signed uploads: upload URLs and their parts, confirmation, upload status.
* :mod:`.storage`: the public storage routes that signed URLs point at (PUT, GET, HEAD).
* :mod:`.common`: wire shapes, part plans and storage URLs the others share.
* :mod:`.wire`, :mod:`.storage_wire`: the files and storage families' component schemas (each
  route's declaration sits with its handler).
"""
