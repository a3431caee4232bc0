"""Batch sizing: how many slices fit in one network batch of a given memory budget.

The estimate is of the activations alive at once in an inference forward pass, computed from
the config's layer sizes (no model is built and nothing runs, so a command pays nothing for it:
a forward on the ``meta`` device imported ``torch._dynamo``, seconds per process);
:func:`predictor.slices_per_batch` divides the memory budget by it. Parameter counts and FLOPs
are :mod:`flops`.
"""

from __future__ import annotations

from .networks import ModelConfig
from .networks.decoder import FIRST_UP_FILTERS, HEAD_FILTERS, STAGE_FILTERS
from .networks.vgg import VGG16_BLOCKS, inflated_depths


def activation_elements_per_slice(config: ModelConfig) -> int:
    """Upper estimate of the activation elements alive at once in an inference forward pass.

    The skip features of every trunk live until the decoder reads them, and each is copied
    once more into the decoder's input; on top of that the largest layer holds its input and
    output and a decoder input may be being filled. Estimate:
    ``1.25 * (2 * sum(skips) + 3 * max(layer output))`` elements per slice (multiply by the
    element size in bytes); the 1.25 margin covers temporaries and allocator slack, set from
    ``ru_maxrss`` measurements on the CPU (SF width 1/16 and 1/4 at 512: measured 126 and
    328 MB per slice, estimated 136 and 365 MB). The tests check the two terms against the
    layer outputs of a real forward pass.
    """
    size = config.image_size
    branches = len(config.inputs)
    if config.arch == "EFI":
        depths = inflated_depths(branches)[0]
        trunks, decoder_branches = 1, 1
    else:
        depths = (1,) * len(VGG16_BLOCKS)
        trunks, decoder_branches = (branches, branches) if config.arch == "SF" else (1, 1)
    skips = [
        config.channels(max(block)) * depth * (size >> level) ** 2
        for level, (block, depth) in enumerate(zip(VGG16_BLOCKS, depths))
    ]
    # Largest single layer output: a trunk convolution, a decoder stage's convolutions (at
    # S/2**(4-k)) or its up-convolution (at S/2**(3-k)), the first up-convolution or the head.
    decoder = [config.channels(FIRST_UP_FILTERS) * (size >> 4) ** 2,
               max(config.channels(HEAD_FILTERS), config.num_classes) * size**2]
    for stage, filters in enumerate(STAGE_FILTERS):
        decoder.append(config.channels(filters) * decoder_branches * (size >> (3 - stage)) ** 2)
    largest = max(*skips, *decoder, 3 * size**2)
    return int(1.25 * (2 * trunks * sum(skips) + 3 * largest))
