"""Conformance scenarios, one module per area, each tied to ANS requirement ids.

A scenario drives the SUT through its adapter, lets it talk to the simulators,
then checks what the simulators recorded and what the SUT shows. It never talks
to a socket itself.
"""
