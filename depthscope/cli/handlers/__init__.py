"""The commands' handlers, one module per command: imported only when their command runs.

Each parser module ``depthscope/cli/<command>.py`` names its handler here by string
(:class:`depthscope.cli.lazy.Handler`), so parsing arguments and ``--help`` import nothing heavy.
"""
