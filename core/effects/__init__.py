"""What the masks are turned into, for every face: compositing (`compositing`: mask image, overlay, cut-out,
background blur and replacement), soft edges (`matting`: an alpha matte from the tracker's probabilities, and a
temporally stable one) and object removal (`clip_removal`: from the whole clip, for batch and web; `removal`:
streaming, for OBS). `python -m core.effects --stills DIR` renders one still per effect. Imports only core.io.
"""

from core.effects.clip_removal import ClipRemover
from core.effects.compositing import blur_background, cutout, mask_image, overlay, replace_background
from core.effects.matting import EdgeSettings, StableMatte, soft_alpha
from core.effects.removal import ObjectRemover

__all__ = ["ClipRemover", "EdgeSettings", "ObjectRemover", "StableMatte", "blur_background", "cutout",
           "mask_image", "overlay", "replace_background", "soft_alpha"]
