"""TensorFlow-free runtime: key generation, the ciphers, file formats and key custody.

One folder per concern, floors from the bottom (docs/architecture.md): guards and ciphers,
then formats, keys, keystore, `encryption` (the per-file steps every caller uses), batch,
cli. Never import TensorFlow, Keras or JAX from here (tests/test_layering.py enforces it,
and that no module imports a folder above its own).
"""

from keras_dkg.runtime import moved as _moved

_moved.install()
