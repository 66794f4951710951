"""gpuconv: readable, tested convolution, transposed-convolution and pooling kernels.

Users import only this package; ``gpuconv.functional`` holds the ops (re-exported
here) and ``gpuconv.shapes`` the output-size arithmetic they share.
"""

__version__ = "0.1.0"

from gpuconv import functional, shapes  # noqa: E402
from gpuconv.backends import BACKENDS, BackendUnavailableError, check_errors  # noqa: E402
from gpuconv.functional import *  # noqa: E402,F401,F403
from gpuconv.functional import __all__ as _functional_all  # noqa: E402

__all__ = ["functional", "shapes", "BACKENDS", "BackendUnavailableError", "check_errors",
           *_functional_all]
