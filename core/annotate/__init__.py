"""Annotation by clicks (shared by the web face and the OBS plugin's `--box`): the marks and their editing
(`marks`), how they become a label map (`objects`: the trained click-and-box network of `network` run by
`segmenter`, the default, or `grabcut`), and the click simulation and encoding the network is trained and scored with
(`clicks`). Imports core.io, core.model and core.weights.
"""

from core.annotate.marks import (MARK_KINDS, BoxStart, Mark, MarkKind, add_click, add_drag, annotated_ids, clear,
                                 object_colour, render_marks)
from core.annotate.objects import DEFAULT_METHOD, METHODS, Method, apply_brush, labels_from_marks, object_mask

__all__ = ["DEFAULT_METHOD", "MARK_KINDS", "METHODS", "BoxStart", "Mark", "MarkKind", "Method", "add_click",
           "add_drag", "annotated_ids", "apply_brush", "clear", "labels_from_marks", "object_colour", "object_mask",
           "render_marks"]
