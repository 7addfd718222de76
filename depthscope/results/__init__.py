"""Run-level products read from saved results: the tidy export (:mod:`.export`) and the
comparison of runs (:mod:`.compare`).

The saved document itself, :class:`~depthscope.core.result.Result`, sits in the core (it imports
only the core), so every layer can read it without importing upward.
"""
