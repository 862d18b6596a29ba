"""Comparison methods, one module each. Every module here is imported by the method registry."""
