"""Security analysis: metrics, NIST SP 800-22, baselines, attacks. Never imports TensorFlow."""
