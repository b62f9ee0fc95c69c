"""TensorFlow-free runtime: preprocessing, image I/O, key generation and the cipher.

Never import TensorFlow or Keras from here (tests/test_layering.py enforces it).
"""
