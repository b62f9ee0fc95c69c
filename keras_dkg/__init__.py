"""keras_dkg: DeepKeyGen (Ding et al., IEEE TNNLS 2021) for Keras 3, with a TensorFlow-free runtime.

Importing the top-level package imports nothing heavy: `keras_dkg.runtime` and
`keras_dkg.analysis` must work where TensorFlow is not installed.
"""

__version__ = "0.1.0"
