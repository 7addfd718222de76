"""The ``depthscope`` command: one module per subcommand, each with ``add_parser(subparsers)``.

Every subcommand registers its handler by name, ``set_defaults(handler=Handler("module:function",
check=CHECK))`` (:mod:`depthscope.cli.lazy`): parsing and ``--help`` import only the light parser
modules; the command's ``CHECK(args)`` refuses bad option values next, and only then is the
handler's module (under :mod:`depthscope.cli.handlers`) imported and run; it returns the exit
status. A :class:`~depthscope.core.errors.DepthscopeError` becomes one line and exit status 2, an
interrupt 130.
"""

from __future__ import annotations

import argparse
import sys

from depthscope import __version__
from depthscope.cli import (
    analyze,
    compare,
    export,
    fetch,
    finetune,
    lens,
    maps,
    models,
    plot,
    prune,
    scratch,
)
from depthscope.cli.lazy import Handler
from depthscope.cli.options import quiet_libraries
from depthscope.core.allocator import keep_freed_memory
from depthscope.core.errors import DepthscopeError
from depthscope.core.interrupts import RunInterrupted, interrupts_not_lost, pending

DESCRIPTION = """\
depthscope measures how a language model uses its depth: how much each layer adds to the
residual stream, which later computations and predictions depend on it, when the logit lens
converges, and more (Csordás, Manning & Potts 2025, "Do Language Models Use Their Depth
Efficiently?"). Works on any Hugging Face decoder-only LM; built-in models run offline.
"""

EXAMPLES = """\
examples:
  depthscope models                          list the built-in models
  depthscope analyze                         all analyses, 10 prompts, smollm2-135m
  depthscope analyze gemma3-270m --analyses contributions,logit-lens -n 20
  depthscope analyze ./my-model --data file:prompts.jsonl --device cuda --dtype bfloat16
  depthscope plot runs/smollm2-135m          redraw figures from saved results
"""


# Commands defined in their own modules: each has ``add_parser(subparsers)``, which registers the
# command with ``set_defaults(handler=Handler(...))``; in the order `depthscope --help` lists them
COMMANDS = (models, fetch, analyze, maps, export, compare, prune, scratch, finetune, lens, plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depthscope",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--verbose", action="store_true", help="show third-party output (transformers' messages)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    handler = args.handler
    try:
        with interrupts_not_lost():
            if isinstance(handler, Handler):
                if handler.check is not None:
                    handler.check(args)  # a refused option answers before anything heavy loads
                handler = handler.run
            if not args.verbose:
                quiet_libraries()
            keep_freed_memory()
            code = handler(args)
            if pending():  # swallowed after the last progress update: the work is complete
                print(
                    "depthscope: interrupted after the work finished; the results are complete",
                    file=sys.stderr,
                )
                return 130
            return code
    except RunInterrupted as exc:
        print(f"depthscope: {exc}", file=sys.stderr)
        return 130
    except DepthscopeError as exc:
        print(f"depthscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("depthscope: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
