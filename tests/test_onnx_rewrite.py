"""export/onnx_rewrite.py: each decomposed instance norm becomes one InstanceNormalization, same keys."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from keras_dkg.export.onnx_rewrite import fuse_instance_norm


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
