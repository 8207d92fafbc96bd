"""Training code (torch at import): the one training loop (loop.py) and the encoder's training (encoder.py).
Never imported at run time."""
