"""Annotation by clicks (shared by the web face and the OBS plugin's `--box`): the marks and their editing
(`marks`) and how they become a label map (`grabcut`). Imports only core.io.
"""

from core.annotate.grabcut import labels_from_marks, object_mask
from core.annotate.marks import (MARK_KINDS, BoxStart, Mark, MarkKind, add_click, annotated_ids, clear, object_colour,
                                 render_marks, undo)

__all__ = ["MARK_KINDS", "BoxStart", "Mark", "MarkKind", "add_click", "annotated_ids", "clear", "labels_from_marks",
           "object_colour", "object_mask", "render_marks", "undo"]
