"""export/onnx_rewrite.py: norms fused, transposed-conv crops folded; the same keys."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from keras_dkg.export.onnx_rewrite import (
    fold_transpose_crop,
    fuse_instance_norm,
    transpose_as_depth_to_space,
)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_every_norm_is_fused_and_the_keys_stay_the_same(tiny_run_dir):
    from keras_dkg.export.onnx import convert
    from keras_dkg.export.source import load_source

    original = convert(load_source(tiny_run_dir).model)  # tf2onnx's graph, before the rewrite
    fused = onnx.ModelProto()
    fused.CopyFrom(original)
    count = fuse_instance_norm(fused)
    onnx.checker.check_model(fused)
    ops = [node.op_type for node in fused.graph.node]
    assert count > 0 and ops.count("InstanceNormalization") == count
    assert "GlobalAveragePool" not in ops and "Reciprocal" not in ops, "no decomposed norm is left"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 48, 3)).astype(np.float32)
    before, after = _run(original, x), _run(fused, x)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-4)
    keys = [np.clip(np.rint((y + 1) * 127.5), 0, 255) for y in (before, after)]
    assert np.mean(keys[0] != keys[1]) < 0.001, "within the export's parity tolerance (1 % of bytes)"
    assert fuse_instance_norm(fused) == 0, "idempotent"


def test_transpose_crop_becomes_pads_bit_for_bit(tiny_run_dir):
    """tf2onnx's Slice + Pad after each ConvTranspose folded into its pads: identical outputs at any size."""
    from keras_dkg.export.onnx import convert
    from keras_dkg.export.source import load_source

    original = convert(load_source(tiny_run_dir).model)
    folded = onnx.ModelProto()
    folded.CopyFrom(original)
    fuse_instance_norm(folded)
    fused_only = onnx.ModelProto()
    fused_only.CopyFrom(folded)
    count = fold_transpose_crop(folded)
    onnx.checker.check_model(folded)
    ops = [node.op_type for node in folded.graph.node]
    assert count == ops.count("ConvTranspose") == 2
    assert "Slice" not in ops and "Shape" not in ops, "the crop and its shape arithmetic are gone"
    assert len(folded.graph.node) < len(fused_only.graph.node)
    rng = np.random.default_rng(1)
    for shape in ((1, 32, 32, 3), (2, 36, 52, 3), (1, 64, 20, 3)):  # heights and widths 4k, not only 2^n
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        np.testing.assert_array_equal(_run(folded, x), _run(fused_only, x))
    assert fold_transpose_crop(folded) == 0, "idempotent"

    phases = onnx.ModelProto()
    phases.CopyFrom(folded)
    assert transpose_as_depth_to_space(phases) == 2
    onnx.checker.check_model(phases)
    assert "ConvTranspose" not in [node.op_type for node in phases.graph.node]
    x = rng.uniform(-1, 1, (1, 36, 44, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(phases, x), _run(folded, x), rtol=0, atol=1e-4)
