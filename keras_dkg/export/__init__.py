"""`dkg-export`: the trained Keras 3 generator → ONNX (for the runtime) or TFLite.

Every export is checked against Keras on the embedded seed image at two sizes and is
refused when it drifts past the tolerance in `keras_dkg.export.parity`. The modules import
TensorFlow, Keras, tf2onnx and onnx where they run, so import them only where those are
installed (`[train]` / `[train-cpu]` extras); `keras_dkg.runtime` never needs them.

    from keras_dkg.export import export_onnx
    result = export_onnx("runs/x", "key.onnx")   # ExportResult: .path, .parity

Modules: `source` (load a run folder or .keras file), `parity` (the check and its
tolerance), `onnx` and `tflite` (one converter each), `cli` (the console script).
"""


def export_onnx(*args, **kwargs):
    """keras_dkg.export.onnx.export_onnx, imported on first use (it loads TensorFlow)."""
    from keras_dkg.export.onnx import export_onnx as convert

    return convert(*args, **kwargs)


__all__ = ["export_onnx"]
