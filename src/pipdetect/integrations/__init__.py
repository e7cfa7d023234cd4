"""Integrations with batch engines, each an optional extra.

* :mod:`pipdetect.integrations.ray`: landmarks on Ray Data
  (``pip install ".[ray]"`` in the pipdetect checkout).

Nothing here is imported by ``import pipdetect``; import the submodule you need,
which raises a clear :class:`ImportError` naming the extra when its engine is
not installed.
"""
