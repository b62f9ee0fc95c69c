"""Keras 3 generator → TFLite flatbuffer, parity-checked, metadata in a JSON sidecar.

Route: `tf.lite.TFLiteConverter.from_keras_model(model)` (Keras' `export(format="litert")`
gives the same 2 MB flatbuffer: dynamic shape, MIRROR_PAD, no Flex ops). Never
`from_concrete_functions`: it converts without error but drops the weights (NaN out),
so parity also fails any non-finite output. A flatbuffer has no free-form metadata
field that the interpreter keeps, so the same keras_dkg metadata as the ONNX file's is
written beside it as `OUT.tflite.json`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from keras_dkg.common import quiet
from keras_dkg.errors import ModelError
from keras_dkg.export.parity import check_parity, keras_runner
from keras_dkg.export.source import ExportResult, SourceModel, check_output, export_metadata
from keras_dkg.runtime.guards.atomic import write_bytes_atomic


def sidecar_path(output: str | os.PathLike) -> Path:
    return Path(f"{output}.json")


def convert(model, verbose: bool = False) -> bytes:
    """The generator as TFLite flatbuffer bytes (float32, dynamic NHWC input)."""
    import tensorflow as tf

    with quiet(not verbose) as log:
        try:
            return tf.lite.TFLiteConverter.from_keras_model(model).convert()
        except Exception as exc:  # the converter raises many types
            tail = log.tail() if log else ""
            raise ModelError(f"TFLite conversion failed ({str(exc)[:300]}) {tail}") from exc


def tflite_runner(content: bytes):
    """TFLite interpreter inference as a numpy function (resizes the input per call)."""
    import tensorflow as tf

    with warnings.catch_warnings(), quiet():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=content)
    input_index = interpreter.get_input_details()[0]["index"]

    def run(batch: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_index, batch.shape, strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()

    return run


def export_tflite(
    source: SourceModel, output: str | os.PathLike, overwrite: bool = False, verbose: bool = False
) -> ExportResult:
    """Convert, check parity against Keras, write OUT.tflite and OUT.tflite.json atomically."""
    import tensorflow as tf

    output = check_output(output, ".tflite", overwrite)
    sidecar = sidecar_path(output)
    check_output(sidecar, ".json", overwrite)
    start = time.perf_counter()
    content = convert(source.model, verbose)
    seconds = time.perf_counter() - start
    report = check_parity(keras_runner(source.model), tflite_runner(content), source.training_size, "tflite")
    report.require(str(output))
    metadata = export_metadata(source, report, f"tf.lite.TFLiteConverter.from_keras_model (TF {tf.__version__})")
    write_bytes_atomic(output, content, overwrite=overwrite)
    write_bytes_atomic(sidecar, (json.dumps(metadata, indent=2) + "\n").encode("utf-8"), overwrite=overwrite)
    details = {"convert_seconds": round(seconds, 2), "bytes": len(content), "sidecar": str(sidecar)}
    return ExportResult(output, report, metadata, details)
