"""Image annotations on the local server: :mod:`.routes` (the HTTP handlers, and the signed
route that serves masks) over :mod:`.store` (labels, mask rows and mask blobs); :mod:`.pixels`
is the one module that uses Pillow; :mod:`.wire` holds the family's component schemas."""
