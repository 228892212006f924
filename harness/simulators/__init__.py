"""Simulators of the national services, each a real server on loopback."""
