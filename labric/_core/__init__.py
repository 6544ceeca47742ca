"""The HTTP core: configuration, the transport and its retry rules, pagination, the converter."""
