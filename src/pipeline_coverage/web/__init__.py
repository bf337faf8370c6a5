"""The HTTP API and dashboard: a thin layer over the core (``create_app``)."""
