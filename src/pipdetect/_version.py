"""pipdetect's version: the one place it is written.

``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``), ``pipdetect.__version__``
re-exports it, and modules inside the package import it from here (never upward from
the package root).
"""

__version__ = "0.3.0"
