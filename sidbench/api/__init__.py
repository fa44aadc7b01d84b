"""The public contract of sidbench plugins: specs, the Detector and Backbone base classes, records,
what a fit sees (FitData, FeatureSet), safe checkpoint I/O, errors, the hook markers, and ``note`` for
progress messages.

Everything a detector, dataset, backbone or perturbation plugin needs is importable from here::

    from sidbench.api import Detector, DetectorSpec, FitData, hookimpl

Nothing here imports torch at import time, so ``sidbench list`` stays instant.
"""
from __future__ import annotations

from .backbone import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneFactory, BackboneInfo
from .detector import Detector, NetworkDetector
from .errors import DataError, FitRequiredError, PluginError, SidbenchError, UnknownNameError, WeightsError
from .checkpoints import strip_prefix
from .fitting import Augment, EpochState, check_augment, FeatureSet, FitData, accuracy, few_shot, pick_classes
from .schedules import EarlyStopping, LrAt, Milestones, PerStep, Plateau, Schedule, StepDecay, lower_lr
from .training import BestWeights, LossMeter, bce_epoch, train_epochs
from .hookspecs import hookimpl, hookspec
from .log import note, show_messages
from .options import Option
from .names import parse_key_values, split_name, split_options
from .records import FAKE, REAL, UNKNOWN, Record
from .specs import (BackboneSpec, DatasetSpec, DetectorSpec, ImageInput, OfficialWeights, PerturbationSpec, PixelInput,
                    ProtocolSpec)

__all__ = [
    "accuracy", "bce_epoch", "check_augment", "Augment", "Backbone", "BackboneFactory", "BackboneInfo", "BackboneSpec",
    "BestWeights",
    "CLIP_MEAN", "CLIP_STD", "DataError", "DatasetSpec", "Detector", "DetectorSpec", "EarlyStopping", "EpochState",
    "LossMeter", "LrAt", "Milestones", "PerStep", "Plateau", "Schedule", "StepDecay", "FAKE", "FeatureSet", "FitData", "FitRequiredError", "ImageInput", "IMAGENET_MEAN", "IMAGENET_STD",
    "NetworkDetector", "OfficialWeights", "Option", "PerturbationSpec", "PixelInput", "PluginError", "ProtocolSpec",
    "REAL", "Record", "SidbenchError", "UNKNOWN", "UnknownNameError",
    "WeightsError", "few_shot", "hookimpl", "hookspec", "lower_lr", "note", "parse_key_values", "pick_classes",
    "show_messages", "split_name", "split_options", "strip_prefix", "train_epochs",
]
