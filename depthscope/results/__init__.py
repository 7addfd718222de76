"""Results: the saved document of one analysis, and what run-level products read from it.

``Result`` (:mod:`depthscope.results.document`) is the JSON document; :mod:`.summary` turns a run
directory's results into the verdict, :mod:`.compare` overlays runs, :mod:`.export` writes tables.
"""

from depthscope.results.document import SCHEMA_VERSION, TIDY_COLUMNS, Result

__all__ = ["Result", "SCHEMA_VERSION", "TIDY_COLUMNS"]
