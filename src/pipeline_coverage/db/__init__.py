"""Connections, the embedded server and the migrations runner."""
