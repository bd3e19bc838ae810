"""The single training loop and its callbacks."""
from .callbacks import Checkpoint, JSONLLogger, ProgressBar, TimeLimit, standard_callbacks
from .recovery import TrainingStoppedWarning
from .state import History, StepInfo, TrainState
from .trainer import Callback, NonFiniteError, TrainConfig, Trainer, lr_at

__all__ = ["Trainer", "TrainConfig", "TrainState", "StepInfo", "History", "Callback", "NonFiniteError",
           "ProgressBar", "JSONLLogger", "Checkpoint", "TimeLimit", "standard_callbacks", "lr_at",
           "TrainingStoppedWarning"]
