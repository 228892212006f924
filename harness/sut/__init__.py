"""Adapters that drive the system under test (SUT) through its capabilities."""

from harness.sut.base import SutAdapter, SutError
from harness.sut.factory import open_sut

__all__ = ["SutAdapter", "SutError", "open_sut"]
