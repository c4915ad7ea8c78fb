"""A third-party sa-frame plugin: a vignette (darkened corners) and a colour inversion.

This module is what sa-frame imports on every call, `sa-frame --help` included, so it stays
light: the augmentations (and torch) are imported inside the hook, when sa-frame asks for them.
"""

from sa_frame import hookimpl


@hookimpl
def register_augmentations(register):
    from sa_frame_vignette.augmentations import Invert, Vignette

    register(Vignette())
    register(Invert())
