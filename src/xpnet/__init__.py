"""xpnet: K-layer networks with batch normalization on the Python array API.

The same code trains on NumPy (CPU), CuPy (NVIDIA GPU) and array_api_strict (tests),
with a leading model axis so that M models (a lambda search, several seeds) train in
lockstep as one batched computation.
"""

from xpnet.backend import Backend, get_backend, to_numpy
from xpnet.errors import XpnetError
from xpnet.network import Network, NetworkConfig, one_hot
from xpnet.schedules import ConstantLR, CyclicalLR, StepDecayLR
from xpnet.training import Callback, DeviceSplit, History, ProgressBar, TrainConfig, train

__version__ = "0.1.0"

__all__ = [
    "Backend", "Callback", "ConstantLR", "CyclicalLR", "DeviceSplit", "History", "Network",
    "NetworkConfig", "ProgressBar", "StepDecayLR", "TrainConfig", "XpnetError", "get_backend",
    "one_hot", "to_numpy", "train", "__version__",
]
