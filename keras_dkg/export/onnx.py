"""Keras 3 generator → ONNX with tf2onnx, parity-checked, with keras_dkg metadata.

Route: `tf2onnx.convert.from_keras(model, input_signature=..., opset=17)` with an
explicit (None, None, None, 3) float32 signature (Keras 3 needs one), so batch, height
and width stay dynamic. Keras' own `model.export(format="onnx", opset_version=17)`
was compared (2026-11, this machine, 6-block generator): it calls tf2onnx too and gives
the same graph — 294 nodes, max|Δ| 2.8e-5 vs Keras on the parity inputs for both — in
the same time (2.5–3.2 s vs 2.5–2.7 s), but names the output "Identity:0" instead of
"key", defaults to opset 15 and prints a numpy FutureWarning. Calling tf2onnx directly
keeps the output name, opset and logs under our control, so that is the route.

Our InstanceNormalization is mean/variance ops, which tf2onnx writes as ten nodes per norm
(GlobalAveragePool, Sub, Mul, Sqrt, Reciprocal, …); `onnx_rewrite.fuse_instance_norm`
then makes each one ONNX InstanceNormalization node, and `fold_transpose_crop` turns
tf2onnx's run-time crop after each transposed convolution into the node's own pads, before
the parity check (docs/performance.md).
"""

from __future__ import annotations

import os
import time
from collections import Counter

from keras_dkg.common import quiet
from keras_dkg.errors import InputError, ModelError
from keras_dkg.export.onnx_rewrite import optimize
from keras_dkg.export.parity import check_parity, keras_runner
from keras_dkg.export.source import ExportResult, SourceModel, check_output, export_metadata
from keras_dkg.runtime.guards.atomic import write_bytes_atomic

DEFAULT_OPSET = 17
INPUT_NAME = "seed"
DIM_NAMES = ("batch", "height", "width")


def convert(model, opset: int = DEFAULT_OPSET, verbose: bool = False):
    """Return an onnx.ModelProto of the generator with dynamic (batch, height, width, 3) input."""
    if opset < DEFAULT_OPSET:
        raise InputError(f"opset {opset} is too old; use {DEFAULT_OPSET} or newer")
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, None, None, 3), tf.float32, name=INPUT_NAME),)
    with quiet(not verbose) as log:
        try:
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
        except Exception as exc:  # tf2onnx raises many types
            tail = log.tail() if log else ""
            raise ModelError(f"tf2onnx could not convert the generator ({exc}) {tail}") from exc
    for value in (*proto.graph.input, *proto.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, DIM_NAMES, strict=False):
            dim.dim_param = name
    return proto


def onnx_runner(proto):
    """onnxruntime (CPU) inference of a ModelProto as a numpy function."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def op_histogram(proto) -> dict[str, int]:
    return dict(Counter(node.op_type for node in proto.graph.node).most_common())


def export_onnx(
    source: SourceModel | str | os.PathLike,
    output: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    verbose: bool = False,
    training_size: int | None = None,
) -> ExportResult:
    """Convert, check parity against Keras, add metadata_props, write atomically.

    `source` is a loaded SourceModel, or a run folder / .keras file (loaded quietly, at
    `training_size` or the one its run.json records). Raises ModelError when parity fails.
    """
    import onnx
    import tf2onnx

    if not isinstance(source, SourceModel):
        from keras_dkg.export.source import load_source

        with quiet(not verbose):
            source = load_source(source, training_size)

    output = check_output(output, ".onnx", overwrite)
    start = time.perf_counter()
    proto = convert(source.model, opset, verbose)
    rewrites = optimize(proto)  # one InstanceNormalization per norm, crops as pads (export/onnx_rewrite.py)
    seconds = time.perf_counter() - start
    report = check_parity(keras_runner(source.model), onnx_runner(proto), source.training_size, "onnx")
    report.require(str(output))
    metadata = export_metadata(source, report, f"tf2onnx {tf2onnx.__version__} from_keras opset {opset}")
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **metadata})
    proto.doc_string = "keras_dkg DeepKeyGen generator: seed (N,H,W,3) float32 in [-1,1] -> key, tanh"
    onnx.checker.check_model(proto)
    write_bytes_atomic(output, proto.SerializeToString(), overwrite=overwrite)
    details = {"nodes": len(proto.graph.node), **rewrites, "ops": op_histogram(proto),
               "convert_seconds": round(seconds, 2),
               "opset": opset, "bytes": output.stat().st_size}
    return ExportResult(output, report, metadata, details)
