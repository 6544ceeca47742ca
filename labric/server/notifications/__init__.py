"""Notifications on the local server: :mod:`.routes` (the HTTP handlers) over :mod:`.store`
(their SQL); :mod:`.wire` holds the family's component schemas."""
