"""Sub-commands of the ``strokeperfusionseg`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``handler=<function(args) -> int>`` as a default.
"""
