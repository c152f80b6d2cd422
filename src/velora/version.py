"""The package's version, in a module of its own: every layer may read it without importing the
package's entry point (velora/__init__.py), and pyproject.toml reads it from here."""

__version__ = "0.1.0"
