"""The server's route modules; each exposes ``register(router)``."""
