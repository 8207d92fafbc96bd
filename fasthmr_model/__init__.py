"""FastHMR model library: encoder, body model, bundles and metrics. Knows nothing of ROS.

Run-time paths (bundle loading, preprocessing, ONNX Runtime sessions, numpy body model) import only
numpy and onnxruntime; torch and smplx are imported lazily by the training, conversion and export code.
"""

from fasthmr_model.errors import FastHMRError

__all__ = ["FastHMRError"]
__version__ = "0.1.0"
