"""The runtime works where TensorFlow, Keras and tf2onnx cannot be imported.

The parent test process exports the tiny ONNX model (it may import TensorFlow); a child
process installs a meta-path blocker for `tensorflow`, `keras` and `tf2onnx` before
anything else, then imports every runtime module, generates a key and round-trips an
encryption with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import importlib, json, sys
    from pathlib import Path

    BLOCKED = ("tensorflow", "keras", "tf2onnx")

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("blocker failed")

    modules = ["keras_dkg.runtime", "keras_dkg.runtime.keys.generator", "keras_dkg.runtime.cli.keygen",
               "keras_dkg.runtime.ciphers", "keras_dkg.runtime.cli.encrypt", "keras_dkg.runtime.formats.png_tiff",
               "keras_dkg.runtime.keys.artifact", "keras_dkg.runtime.keystore.store", "keras_dkg.runtime.keys.engines.providers"]
    for module in modules:
        importlib.import_module(module)

    import numpy as np
    from keras_dkg.embedded import seed_path
    from keras_dkg.runtime.ciphers import decrypt_array, encrypt_array, key_size_for
    from keras_dkg.runtime.keys.generator import KeyGenerator

    model, folder = Path(sys.argv[1]), Path(sys.argv[2])
    plain = np.arange(45 * 37, dtype=np.uint16).reshape(45, 37) * 29
    key = KeyGenerator(model, provider="auto").generate(seed_path(), key_size_for(plain.shape, plain.dtype), nonce="t")
    key.save(folder / "key.png")
    ciphertext, meta = encrypt_array(plain, key.pixels, nonce="t")
    assert np.array_equal(decrypt_array(ciphertext, key.pixels, meta), plain)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"shape": list(key.pixels.shape), "provider": key.record["provider"], "heavy": heavy}))
    """
)


def test_runtime_without_tensorflow(tiny_onnx_model, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_onnx_model), str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["shape"] == [48, 24, 3]
    assert (tmp_path / "key.png").is_file() and (tmp_path / "key.json").is_file()
