"""The blocking runtime behind ``Labric``: the portal, the sync pager, the facade generator."""
