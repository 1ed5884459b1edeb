"""The inference core: the tracker (`tracker`), its constant-size memory (`memory`), the clip unroll it shares
with training (`unroll`), first-frame adaptation (`adapt`), and the ONNX graphs (`graphs`, `export`) and their
ONNX Runtime backend (`onnx_backend`). Imports only core.io, core.model, core.weights and core.clips.
"""
