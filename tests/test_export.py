"""dkg-export: ONNX and TFLite parity with Keras at two sizes, metadata, refusals, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_dkg.errors import InputError, ModelError, OutputError

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")

from keras_dkg.export import cli  # noqa: E402
from keras_dkg.export.parity import MAX_ABS_DELTA, MAX_BYTE_SHARE  # noqa: E402
from keras_dkg.export.source import load_source  # noqa: E402


def test_onnx_parity_at_two_sizes(tiny_export):
    report = tiny_export.report
    assert report.passed
    assert [case.shape for case in report.cases] == [[1, 64, 64, 3], [2, 48, 96, 3]]
    for case in report.cases:
        assert case.max_abs_delta <= MAX_ABS_DELTA and case.differing_bytes <= MAX_BYTE_SHARE


def _keras_layers(run_dir):
    from keras_dkg.export.source import load_source

    return load_source(run_dir).model.layers


def test_onnx_graph_is_dynamic_plain_ops_with_metadata(tiny_onnx_model, tiny_run_dir):
    model = onnx.load(tiny_onnx_model)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:3] == ["batch", "height", "width"]
    ops = [node.op_type for node in model.graph.node]
    norms = sum(layer.__class__.__name__ == "InstanceNormalization" for layer in _keras_layers(tiny_run_dir))
    assert ops.count("InstanceNormalization") == norms, "each norm fused to one node (export/onnx_rewrite.py)"
    assert "GlobalAveragePool" not in ops
    props = {p.key: p.value for p in model.metadata_props}
    import keras_dkg
    from keras_dkg.runtime.ciphers.metadata import digest
    from keras_dkg.runtime.keys.preprocess import PREPROCESSING_SPEC, QUANTISATION_RULE

    assert props["keras_dkg.version"] == keras_dkg.__version__
    assert props["keras_dkg.training_size"] == "64"
    assert props["keras_dkg.preprocessing"] == PREPROCESSING_SPEC
    assert props["keras_dkg.quantisation"] == QUANTISATION_RULE
    assert props["keras_dkg.source_sha256"] == digest((tiny_run_dir / "generator.keras").read_bytes())
    assert json.loads(props["keras_dkg.parity"])["passed"] is True


def test_onnx_runs_at_sizes_it_was_not_checked_at(tiny_onnx_model, tiny_run_dir):
    import onnxruntime as ort

    from keras_dkg.export.parity import keras_runner

    source = load_source(tiny_run_dir)
    session = ort.InferenceSession(str(tiny_onnx_model), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 36, 20, 3)).astype(np.float32)
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(out - keras_runner(source.model)(x)).max() < MAX_ABS_DELTA


def test_tflite_parity_and_sidecar(tiny_run_dir, tmp_path):
    from keras_dkg.export.tflite import export_tflite

    result = export_tflite(load_source(tiny_run_dir), tmp_path / "g.tflite")
    assert result.report.passed and len(result.report.cases) == 2
    assert result.path.stat().st_size > 100_000  # the weights are in it
    sidecar = json.loads((tmp_path / "g.tflite.json").read_text())
    assert sidecar["keras_dkg.training_size"] == "64"


def test_parity_failure_writes_nothing(tiny_run_dir, tmp_path, monkeypatch):
    import keras_dkg.export.onnx as onnx_export

    real = onnx_export.onnx_runner
    monkeypatch.setattr(onnx_export, "onnx_runner", lambda proto: (lambda x: real(proto)(x) + 0.01))
    target = tmp_path / "drift.onnx"
    with pytest.raises(ModelError, match="not written"):
        onnx_export.export_onnx(load_source(tiny_run_dir), target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_non_finite_export_is_refused(tiny_run_dir, tmp_path, monkeypatch):
    import keras_dkg.export.tflite as tflite_export

    monkeypatch.setattr(tflite_export, "tflite_runner", lambda content: (lambda x: np.full_like(x, np.nan)))
    with pytest.raises(ModelError, match="NaN"):
        tflite_export.export_tflite(load_source(tiny_run_dir), tmp_path / "nan.tflite")
    assert list(tmp_path.iterdir()) == []


def test_source_errors(tmp_path, tiny_generator_keras):
    with pytest.raises(InputError):
        load_source(tmp_path / "nothing.keras")
    with pytest.raises(InputError):
        load_source(tmp_path / "model.h5")
    (tmp_path / "generator.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="generator.keras"):
        load_source(tmp_path)
    (tmp_path / "run.json").write_text('{"image_size": 30}')
    with pytest.raises(InputError, match="multiple of 4"):
        load_source(tmp_path)
    assert load_source(tiny_generator_keras).training_size == 256  # bare .keras: default


def test_cli_onnx_and_refusals(tiny_generator_keras, tiny_onnx_model, tmp_path, capsys):
    out = tmp_path / "g.onnx"
    assert cli.main(["onnx", str(tiny_generator_keras), "--training-size", "64", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "parity onnx seed 64x64" in printed.out and f"wrote {out}" in printed.out
    assert printed.err == ""  # TensorFlow/tf2onnx logs silenced
    assert cli.main(["onnx", str(tiny_generator_keras), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dkg-export: error:") and "exists" in err and err.count("\n") == 1
    assert cli.main(["tflite", str(tiny_generator_keras), "-o", str(tmp_path / "g.onnx2")]) == 2
    with pytest.raises(OutputError):
        from keras_dkg.export.source import check_output

        check_output(tmp_path / "x.tflite", ".onnx", False)
