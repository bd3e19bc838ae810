"""The single training loop and its callbacks."""
from .callbacks import Checkpoint, JSONLLogger, ProgressBar, standard_callbacks
from .recovery import TrainingStoppedWarning
from .trainer import Callback, History, NonFiniteError, TrainConfig, Trainer, TrainState, lr_at

__all__ = ["Trainer", "TrainConfig", "TrainState", "History", "Callback", "NonFiniteError",
           "ProgressBar", "JSONLLogger", "Checkpoint", "standard_callbacks", "lr_at",
           "TrainingStoppedWarning"]
