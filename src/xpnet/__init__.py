"""xpnet: K-layer networks with batch normalization on the Python array API.

The same code trains on NumPy (CPU), CuPy (NVIDIA GPU) and array_api_strict (tests),
with a leading model axis so that M models (a lambda search, several seeds) train in
lockstep as one batched computation.

The short API is :class:`Classifier` (a scikit-learn classifier: fit / predict /
score; ``*_all`` for M lockstep models) and :class:`ClassifierCV` (a grid fitted as one
lockstep network, in scikit-learn's ``*CV`` style) with :func:`load_cifar10`, the
schedules and the optimizers' options (``SGD``, ``Adam``,
``AdamW``); ``Network``, ``train``, ``DeviceSplit`` and the callbacks are the lower
layer it is built on.  Importing xpnet imports neither Dask,
matplotlib, tqdm nor scikit-learn.
"""

from xpnet.backend.devices import Backend, get_backend, to_numpy
from xpnet.data import Dataset, Split, load_cifar10
from xpnet.errors import XpnetError
from xpnet.estimators.classifier import Classifier
from xpnet.estimators.classifier_cv import ClassifierCV
from xpnet.network.network import Network, NetworkConfig, one_hot
from xpnet.search.halving import Halving
from xpnet.search.pbt import PBT
from xpnet.training import Callback, DeviceSplit, History, ProgressBar, TrainConfig, train
from xpnet.training.optim import SGD, Adam, AdamW
from xpnet.training.schedules import ConstantLR, CyclicalLR, StepDecayLR

__version__ = "0.1.0"

__all__ = [
    "PBT", "SGD", "Adam", "AdamW", "Backend", "Callback", "Classifier", "ClassifierCV",
    "ConstantLR", "CyclicalLR",
    "Dataset", "DeviceSplit", "Halving", "History", "Network", "NetworkConfig", "ProgressBar",
    "Split", "StepDecayLR", "TrainConfig",
    "XpnetError", "get_backend", "load_cifar10", "one_hot", "to_numpy", "train", "__version__",
]
