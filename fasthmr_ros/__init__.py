"""fasthmr_ros: the ROS 2 adapter around fasthmr_model (messages <-> arrays, parameters, publishing).

Importing it before numpy (as `fasthmr_node`, `python -m fasthmr_ros.node` and the bench do) runs numpy's
BLAS on one thread, unless OPENBLAS_NUM_THREADS says otherwise: the node's matrices are tiny, and BLAS
threads fought ONNX Runtime's for the cores (skinning three meshes took 24 ms instead of 0.9 ms here).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
