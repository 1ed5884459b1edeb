"""What the masks are turned into, for every face: compositing (`compositing`: mask image, overlay, cut-out,
background blur and replacement) and object removal (`removal`). `python -m core.effects --stills DIR` renders
one still per effect. Imports only core.io.
"""

from core.effects.compositing import blur_background, cutout, mask_image, overlay, replace_background
from core.effects.removal import ObjectRemover

__all__ = ["ObjectRemover", "blur_background", "cutout", "mask_image", "overlay", "replace_background"]
