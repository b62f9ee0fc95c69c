"""What every export starts from: the Keras generator, its training size and fingerprint."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras_dkg
from keras_dkg.common import quiet
from keras_dkg.errors import DkgError, InputError, ModelError, OutputError
from keras_dkg.runtime.ciphers.metadata import SIZE_MULTIPLE, digest
from keras_dkg.runtime.keys.preprocess import PREPROCESSING_SPEC, QUANTISATION_RULE

DEFAULT_TRAINING_SIZE = 256  # a bare .keras file does not say what it was trained at
GENERATOR_FILE = "generator.keras"
RUN_FILE = "run.json"


@dataclass
class SourceModel:
    """A loaded generator: `model` (keras.Model), its .keras `path`, `training_size`, `sha256`."""

    model: object
    path: Path
    training_size: int
    sha256: str


@dataclass
class ExportResult:
    """What an export wrote and the parity report that allowed it."""

    path: Path
    report: object  # parity.ParityReport
    metadata: dict[str, str]
    details: dict = field(default_factory=dict)

    @property
    def parity(self):
        """The parity report (passed, per-case max |Δ|) against Keras."""
        return self.report


def import_keras():
    """Import TensorFlow quietly (it logs on import even at TF_CPP_MIN_LOG_LEVEL=2) and register our layers."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet():
            import keras
            import tensorflow  # noqa: F401
            import tf2onnx  # noqa: F401

            import keras_dkg.train.networks  # noqa: F401 - registers ReflectionPadding2D, InstanceNormalization
    except ImportError as exc:
        raise DkgError(
            f"exporting needs TensorFlow, Keras 3 and tf2onnx ({exc}); pip install 'keras-dkg[train-cpu]'"
        ) from exc
    return keras


def _training_size(run_file: Path) -> int:
    try:
        run = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{run_file}: cannot read run settings ({exc})") from exc
    size = run.get("image_size") if isinstance(run, dict) else None
    if not isinstance(size, int) or size <= 0 or size % 4:
        raise InputError(f"{run_file}: 'image_size' must be a positive multiple of 4, got {size!r}")
    return size


def load_source(path: str | os.PathLike, training_size: int | None = None) -> SourceModel:
    """Load RUN_DIR (generator.keras + run.json) or a bare MODEL.keras (training size 256)."""
    source = Path(path)
    if source.is_dir():
        keras_file = source / GENERATOR_FILE
        run_file = source / RUN_FILE
        size = training_size or (_training_size(run_file) if run_file.exists() else DEFAULT_TRAINING_SIZE)
    elif source.suffix == ".keras":
        keras_file, size = source, training_size or DEFAULT_TRAINING_SIZE
    else:
        raise InputError(f"{source}: expected a run folder with {GENERATOR_FILE} or a .keras file")
    if not keras_file.is_file():
        raise InputError(f"{keras_file}: no such model file")
    if size <= 0 or size % 4:
        raise InputError(f"training size must be a positive multiple of 4, got {size}")
    if not zipfile.is_zipfile(keras_file):  # Keras would say "File not found" for these
        raise ModelError(f"{keras_file}: not a Keras archive (a .keras file is a zip file; this one is "
                         f"{'empty' if keras_file.stat().st_size == 0 else 'damaged or truncated'})")
    keras = import_keras()
    try:
        with quiet():
            model = keras.models.load_model(keras_file, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ...
        lines = str(exc).strip().splitlines()
        reason = lines[0][:300] if lines else type(exc).__name__
        raise ModelError(f"{keras_file}: cannot load the Keras model ({reason})") from exc
    inputs = getattr(model, "inputs", None) or []
    shape = tuple(inputs[0].shape) if inputs else ()
    if len(inputs) != 1 or len(shape) != 4 or shape[-1] != 3:
        raise ModelError(f"{keras_file}: expected one (N, H, W, 3) input, got {shape}")
    _refuse_non_finite_weights(model, keras_file)
    return SourceModel(model, keras_file, int(size), digest(keras_file.read_bytes()))


def _refuse_non_finite_weights(model, keras_file: Path) -> None:
    """NaN or infinite weights (a diverged training) make every key NaN: refuse before converting."""
    import numpy as np

    for variable in model.weights:
        values = np.asarray(variable)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ModelError(
                f"{keras_file}: weight {variable.path} holds NaN or infinite values "
                "(diverged training?); nothing exported"
            )


def check_output(output: str | os.PathLike, suffix: str, overwrite: bool) -> Path:
    """Refuse a wrong suffix or an existing file before the slow conversion (the write re-checks)."""
    target = Path(output)
    if target.suffix.lower() != suffix:
        raise OutputError(f"{target}: this export writes a {suffix} file; name the output *{suffix}")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: exists; refusing to overwrite (use --overwrite)")
    return target


def export_metadata(source: SourceModel, report, converter: str) -> dict[str, str]:
    """The strings every exported model carries (ONNX metadata_props, TFLite sidecar)."""
    return {
        "keras_dkg.version": keras_dkg.__version__,
        "keras_dkg.training_size": str(source.training_size),
        "keras_dkg.size_multiple": str(SIZE_MULTIPLE),
        "keras_dkg.preprocessing": PREPROCESSING_SPEC,
        "keras_dkg.quantisation": QUANTISATION_RULE,
        "keras_dkg.source_sha256": source.sha256,
        "keras_dkg.source_file": source.path.name,
        "keras_dkg.converter": converter,
        "keras_dkg.parity": json.dumps(report.to_dict(), sort_keys=True),
    }
