"""Training code (torch at import): the encoder on the synthetic world. Never imported at run time."""
