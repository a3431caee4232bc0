"""The ``strokeperfusionseg`` command line.

Each sub-command lives in :mod:`StrokePerfusionSegLib.commands` as a module with
``register(subparsers)``; heavy imports (torch, pydicom) happen inside the command, so
``--help`` is instant. Exit status: 0 success, 2 user error (:class:`InputError`), 1 failure,
130 cancelled. The program (:func:`run`) ends without the interpreter's teardown; :func:`main`
is for callers that go on (tests, Slicer's batch script).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .errors import run_command
from .processheap import retain_freed_memory

#: Sub-command modules in the order ``--help`` lists them.
COMMAND_MODULES = ("demo", "phantom", "perfusion", "segment", "model_info", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strokeperfusionseg",
        description=(
            "Segment the ischemic core and penumbra of acute ischemic stroke from CT perfusion. "
            "Decision support only: a physician reviews every result."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    return run_command(lambda: args.handler(args), name="strokeperfusionseg")


def run() -> None:
    """The ``strokeperfusionseg`` program: :func:`main`, then exit at once with its status.

    The program keeps the memory it frees for reuse (:func:`processheap.retain_freed_memory`):
    large arrays and feature maps then reuse pages already touched instead of new ones from the
    kernel each time. Every output is written and closed when ``main`` returns; tearing the
    interpreter down (freeing every module's objects, PyTorch's above all) would only add about
    half a second to a command that imported PyTorch, so the process ends without it once what
    was printed or logged is flushed.
    """
    retain_freed_memory()
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
