"""Dashboards on the local server: :mod:`.routes` (the HTTP handlers) over :mod:`.store`
(widget validation, their SQL, and the queries widgets run); :mod:`.wire` holds the
family's component schemas."""
