"""Training code: the one training loop (loop.py), the encoder's training (encoder.py) and the training configs
with the shipped recipes (recipes.py, which alone has no torch: the command line reads it). Never imported at
run time."""
