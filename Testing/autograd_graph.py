"""What an autograd graph holds, for tests that check which backward a forward records."""

from __future__ import annotations

import torch


def autograd_node_names(output: torch.Tensor) -> set[str]:
    """Class names of every node of ``output``'s backward graph (e.g. ``CatBackward0``)."""
    names, seen, pending = set(), set(), [output.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        pending.extend(next_node for next_node, _ in node.next_functions)
    return names
