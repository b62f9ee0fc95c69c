"""`dkg-export`: the trained Keras 3 generator → ONNX (for the runtime) or TFLite.

Every export is checked against Keras on the embedded seed image at two sizes and is
refused when it drifts past the tolerance in `keras_dkg.export.parity`. This package
imports TensorFlow, Keras, tf2onnx and onnx, so import its modules only where those are
installed (`[train]` / `[train-cpu]` extras); `keras_dkg.runtime` never needs them.

Modules: `source` (load a run folder or .keras file, silence converter output),
`parity` (the check and its tolerance), `onnx` and `tflite` (one converter each),
`cli` (the console script).
"""
