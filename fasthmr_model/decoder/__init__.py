"""The diffusion decoder: pose representation and IK, VAE motion prior, one-step latent denoiser, causal window.

Run-time parts (pose.py, streaming.py, runtime.py) import numpy and onnxruntime only; the models and their
training (model.py, train.py, export.py) import torch.
"""
