"""The local server's admin routes: fault injection, dataset limits, counters (:mod:`.routes`),
and their component schemas (:mod:`.wire`)."""
