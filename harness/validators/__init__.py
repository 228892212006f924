"""Validators: pure functions from what a SUT produced (bytes, records) to findings.

They live apart from simulators and scenarios so that every protocol check is written
once, can be run offline on a saved exchange (``segur-harness validate``), and never
raises on hostile input: a broken message is a finding, not a crash.
"""
