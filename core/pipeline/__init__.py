"""One frame loop for every face: decode → track → soft matte → render and encode each output, each stage in its
own thread with bounded queues (`stages.run_frames`), and the outputs it feeds (`outputs`: the effect-name →
renderer dispatch, the replacement background, and the sinks that write mask PNGs, videos and the removal
video). The batch and web faces both build their sinks here and call `run_frames`, so every speed-up reaches
both. Imports inference, effects and io.
"""

from core.pipeline.outputs import (EFFECTS, RENDERED, BackgroundError, EffectSettings, FrameSink, MaskPngSink,
                                   RemovalSink, VideoSink, check_background, is_large, renderer)
from core.pipeline.stages import ClipEndedEarly, check_reached, run_frames

__all__ = ["EFFECTS", "RENDERED", "BackgroundError", "ClipEndedEarly", "EffectSettings", "FrameSink", "MaskPngSink",
           "RemovalSink", "VideoSink", "check_background", "check_reached", "is_large", "renderer", "run_frames"]
