"""Where a batch's workers run, each engine behind one `run(...)`: local processes
(processes) or Ray actors (ray_actors, the [ray] extra; ray_reaper cleans up after a killed
driver). Workers start without the key store passphrase (environment).
"""
