"""The CLI with every decoder layer slowed down, so a signal reliably lands mid-run.

``python -c SLOW_CLI DELAY ARGS...`` runs ``depthscope ARGS...`` with a global forward pre-hook that
sleeps ``DELAY`` seconds before each decoder layer (nothing else changes). Shared by the interrupt
tests of one process (tests/bad_input) and of several (tests/distributed).
"""

import textwrap

SLOW_CLI = textwrap.dedent(
    """
    import signal, sys, time
    import torch

    # Ctrl-C as in a terminal, also when the test suite itself runs in the background (nohup, &),
    # whose children start with SIGINT ignored and would never see the signal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    DELAY = float(sys.argv[1])

    def slow(module, args):
        if type(module).__name__.endswith(("DecoderLayer", "Block")):
            time.sleep(DELAY)

    torch.nn.modules.module.register_module_forward_pre_hook(slow)
    from depthscope.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)
