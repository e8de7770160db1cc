"""Test support shipped with the package: random labels, fixtures and the backbone x decoder contract harness.

Importing this package imports nothing heavy; each module says what it needs.
"""
