"""The runtime, the analysis and the gateway never import TensorFlow, JAX or Keras (the rule in keras_dkg/__init__.py);
the training package's config layer loads without Keras, so the CLI checks flags before the stack loads."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import keras_dkg

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'tf_keras', 'jax', 'jaxlib'):
            raise ImportError('blocked for the layering test: ' + name)
sys.meta_path.insert(0, Block())
import importlib
for name in NAMES:
    importlib.import_module(name)
print('imported', len(NAMES))
"""


def _modules(package: str) -> list[str]:
    root = Path(keras_dkg.__file__).parent / package.split(".")[-1]
    names = [package]
    for info in pkgutil.walk_packages([str(root)], prefix=package + "."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return names


def test_runtime_and_analysis_import_without_tensorflow():
    names = _modules("keras_dkg.runtime") + _modules("keras_dkg.analysis") + _modules("keras_dkg.gateway") + ["keras_dkg.common", "keras_dkg.embedded", "keras_dkg.errors",
                                                                                 "keras_dkg.cli", "keras_dkg.options"]
    result = subprocess.run([sys.executable, "-c", f"NAMES = {names!r}\n" + BLOCKER],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(names)}" in result.stdout


def test_training_config_and_cli_load_without_keras():
    names = ["keras_dkg.train", "keras_dkg.train.config", "keras_dkg.train.recipes", "keras_dkg.train.runfolder",
             "keras_dkg.train.cli", "keras_dkg.fit", "keras_dkg.export"]
    result = subprocess.run([sys.executable, "-c", f"NAMES = {names!r}\n" + BLOCKER],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
