"""Ségur conformance harness: scenarios, simulators and evidence for ANS referencing."""

__version__ = "0.1.0"
