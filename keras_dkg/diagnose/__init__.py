"""`python -m keras_dkg.diagnose RUN_DIR`: why a training run's keys are not uniform.

Reads a run folder of `python -m keras_dkg.fit` and measures, for keys from held-back
seeds, what an ideal key would not show: byte histograms per channel (saturated 0/255
bytes from tanh, chi-square p), spatial autocorrelation and the 2-D spectrum (where the
bands come from), key sensitivity to one seed pixel and the relatedness of keys for two
nonces; and, from the run's logs, D's loss and accuracy and the sample key's entropy over
training. docs/key_quality.md describes the study it serves.

`statistics` and `run_folder` are numpy only; `keys` loads the Keras generator.
"""
