"""ViTime (Yang et al., TMLR 2025): network, series<->image mapping, checkpoints, forecaster."""
from .checkpoint import CheckpointError, convert_upstream, load_checkpoint, save_native
from .config import ViTimeConfig
from .forecaster import Forecast, ViTimeForecaster, resolve_device
from .mapping import SeriesImageMapper, gaussian_blur
from .model import ViTimeMAE

__all__ = [
    "CheckpointError",
    "Forecast",
    "SeriesImageMapper",
    "ViTimeConfig",
    "ViTimeForecaster",
    "ViTimeMAE",
    "convert_upstream",
    "gaussian_blur",
    "load_checkpoint",
    "resolve_device",
    "save_native",
]
