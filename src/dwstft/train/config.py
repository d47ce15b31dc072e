"""Training configuration: one dataclass of plain values and the three recipes that fill it.

A run is fully described by a :class:`TrainConfig`; ``config.json`` in the run folder is
``dataclasses.asdict`` of it, and ``last.pt`` carries the same dict so that a resumed run
continues with exactly the settings it started with.

Recipes (:data:`RECIPES`) give every field a default; anything passed explicitly overrides
it. ``paper`` is the published schedule (Adam, lr 0.01 held constant, batch 64 for the first
3/4 of the epochs and 128 for the last 1/4); ``fast`` is a short schedule for the same
networks (AdamW, warm-up then cosine decay, label smoothing, weight decay); ``baseline`` is
the recipe of weiaicunzai/pytorch-cifar100, which produced Table 2's CIFAR-100 baseline
numbers (SGD with momentum, multi-step decay, crop + flip + rotation).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dwstft.errors import CheckpointError

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear", "multistep")
AUGMENTS = ("warp", "crop_flip_rotate")
AMP_DTYPES = ("float16", "bfloat16")
#: Fields holding tuples; JSON and ``torch.load(weights_only=True)`` see them as lists.
TUPLE_FIELDS = ("opt_betas", "lr_milestones", "norm_mean", "norm_std")

#: Fields that only say where or how fast the run executes; a resumed run may change them.
RUNTIME_FIELDS = ("output", "data_dir", "device", "compile", "compile_mode", "resume")
#: ``torch.compile`` modes; "reduce-overhead" replays CUDA graphs (CUDA only).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """Every setting of a training run. Epoch counts are whole epochs; learning rates are
    per optimiser step; batch sizes are global (split evenly across DDP ranks).

    The batch size is ``batch_size`` for the first ``epochs - final_epochs`` epochs and
    ``final_batch_size`` for the last ``final_epochs`` (the paper's batch growth; with
    ``final_epochs == 0`` it is constant). The learning rate at fractional epoch t is
    warm-up from ``warmup_lr`` to ``lr`` over ``warmup_epochs`` (linear), then ``sched``:
    ``constant`` (``lr``), ``cosine`` or ``linear`` decay from ``lr`` to ``min_lr`` at
    ``epochs``, or ``multistep``: ``lr`` times ``lr_gamma`` once for every milestone in
    ``lr_milestones`` that is <= t (a milestone m takes effect after m completed epochs).
    Weight decay applies to weights with two or more dimensions only (not to biases or
    normalisation parameters), or to every parameter with ``decay_all_params``.

    Augmentation: ``warp`` (the paper's flip + shift of up to ``max_shift`` + rotation of up
    to ``max_rotation`` degrees, one bilinear warp of the normalised batch) or
    ``crop_flip_rotate`` (torchvision's RandomCrop(padding=``crop_padding``),
    RandomHorizontalFlip, RandomRotation(``max_rotation``) on the uint8 images, then
    normalisation). Flips only where the dataset allows them. Normalisation uses
    ``norm_mean``/``norm_std`` (one value per channel, for images scaled to [0, 1]) or,
    when they are None, the training split's own statistics.

    ``run_id`` is the run's identity: :func:`dwstft.train.train` gives a new run a random
    one (``uuid.uuid4().hex``) and a resumed run keeps its checkpoint's; it is written into
    ``config.json``, ``last.pt`` and ``best.safetensors``, so a checkpoint knows which run
    folder is its own. None for runs started before dwstft recorded it.
    """

    model: str
    dataset: str
    output: str
    recipe: str = "paper"
    data_dir: str | None = None
    epochs: int = 400
    batch_size: int = 64
    final_batch_size: int = 128
    final_epochs: int = 100
    validation_batch_size: int = 500
    drop_last: bool = True
    opt: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    opt_eps: float = 1e-7
    opt_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    decay_all_params: bool = False
    sched: str = "constant"
    min_lr: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    label_smoothing: float = 0.0
    clip_grad: float | None = None
    augment: str = "warp"
    max_shift: float = 0.1
    max_rotation: float = 20.0
    crop_padding: int = 4
    norm_mean: tuple[float, ...] | None = None
    norm_std: tuple[float, ...] | None = None
    seed: int = 0
    amp: bool = False
    amp_dtype: str | None = None
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    device: str | None = None
    resume: str | None = None
    run_id: str | None = None

    def batch_size_at(self, epoch: int) -> int:
        """Global batch size of 0-based ``epoch``."""
        if epoch >= self.epochs - self.final_epochs:
            return self.final_batch_size
        return self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON- and ``torch.load(weights_only=True)``-safe plain values."""
        d = dataclasses.asdict(self)
        for name in TUPLE_FIELDS:
            if d[name] is not None:
                d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"config has unknown keys {unknown}; expected a subset of {names}")
        values = dict(values)
        for name in TUPLE_FIELDS:
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field, its value and what is expected."""
        from dwstft.data import DATASET_NAMES
        from dwstft.models import list_models

        if self.model not in list_models():
            raise ValueError(
                f"model must be a registered model ({', '.join(list_models())}), got {self.model!r}"
            )
        _check_choice("dataset", self.dataset, DATASET_NAMES)
        _check_choice("recipe", self.recipe, tuple(RECIPES))
        _check_choice("opt", self.opt, OPTIMIZERS)
        _check_choice("sched", self.sched, SCHEDULES)
        _check_choice("augment", self.augment, AUGMENTS)
        if self.amp_dtype is not None:
            _check_choice("amp_dtype", self.amp_dtype, AMP_DTYPES)
        if self.compile_mode is not None:
            _check_choice("compile_mode", self.compile_mode, COMPILE_MODES)
            if not self.compile:
                raise ValueError(
                    f"compile_mode ({self.compile_mode!r}) applies with --compile only; add "
                    "--compile or drop --compile-mode"
                )
        for name in ("epochs", "batch_size", "final_batch_size", "validation_batch_size"):
            _check_int(name, getattr(self, name), low=1)
        _check_int("final_epochs", self.final_epochs, low=0, high=self.epochs)
        _check_int("seed", self.seed, low=0)
        _check_int("crop_padding", self.crop_padding, low=0)
        for name in ("lr", "momentum", "opt_eps", "weight_decay", "min_lr", "warmup_lr"):
            _check_float(name, getattr(self, name), low=0.0)
        _check_float("lr_gamma", self.lr_gamma, low=0.0)
        self._validate_milestones()
        self._validate_normalization()
        if isinstance(self.warmup_epochs, (int, float)) and self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs}); lower "
                "--warmup-epochs or raise --epochs"
            )
        _check_float("warmup_epochs", self.warmup_epochs, low=0.0, high=self.epochs)
        _check_float("label_smoothing", self.label_smoothing, low=0.0, high=1.0)
        _check_float("max_shift", self.max_shift, low=0.0, high=0.5)
        _check_float("max_rotation", self.max_rotation, low=0.0, high=180.0)
        if self.clip_grad is not None:
            _check_float("clip_grad", self.clip_grad, low=0.0)
        if len(self.opt_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.opt_betas):
            raise ValueError(f"opt_betas must be two numbers in [0, 1), got {self.opt_betas}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.run_id is not None and (not isinstance(self.run_id, str) or not self.run_id):
            raise ValueError(f"run_id must be a non-empty string or None, got {self.run_id!r}")

    def _validate_milestones(self) -> None:
        milestones = self.lr_milestones
        ok = all(
            isinstance(m, int) and not isinstance(m, bool) and 0 <= m <= self.epochs
            for m in milestones
        )
        if not ok or list(milestones) != sorted(milestones):
            raise ValueError(
                f"lr_milestones must be non-decreasing ints in [0, epochs={self.epochs}] "
                f"(completed epochs after which the lr is multiplied by lr_gamma), got "
                f"{milestones!r}"
            )
        if self.sched == "multistep" and not milestones:
            raise ValueError("sched 'multistep' needs lr_milestones (e.g. --lr-milestones 59 119)")

    def _validate_normalization(self) -> None:
        mean, std = self.norm_mean, self.norm_std
        if mean is None and std is None:
            return
        numbers = [*(mean or ()), *(std or ())]
        finite = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in numbers
        )
        if mean is None or std is None or len(mean) != len(std) or not mean or not finite:
            raise ValueError(
                "norm_mean and norm_std must both be given, with one finite number per "
                f"channel each, or both be None; got norm_mean={mean!r}, norm_std={std!r}"
            )
        if min(std) <= 0:
            raise ValueError(f"norm_std must be positive, got {std!r}")


@dataclass(frozen=True)
class Recipe:
    """A named set of field defaults plus the rules that scale them with ``epochs``.

    With ``batch_growth`` g and ``growth_fraction`` p, unless set explicitly,
    ``final_batch_size = g * batch_size`` and ``final_epochs = round(p * epochs)`` (halves
    rounded up), so ``--epochs 15`` keeps the paper's 3:1 split as 11 + 4. The recipe's
    ``warmup_epochs``, unless set explicitly, is capped at a quarter of the epochs, so
    ``--recipe fast --epochs 1`` warms up for 0.25 epochs instead of failing.

    ``source_milestones`` are a multi-step schedule's milestones as its source writes them
    for the recipe's default epochs E0: 1-based numbers of the first epoch each new lr
    applies to (what ``MultiStepLR.step(epoch)`` with the 1-based epoch about to run does).
    Unless ``lr_milestones`` is set explicitly it becomes ``round(M * epochs / E0) - 1`` for
    each M (completed epochs, at least 0), so other epoch counts keep the proportions.

    ``dataset_defaults`` maps a dataset name to further defaults for it.
    """

    name: str
    defaults: dict[str, Any]
    batch_growth: int = 1
    growth_fraction: float = 0.0
    source_milestones: tuple[int, ...] = ()
    dataset_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


#: weiaicunzai/pytorch-cifar100, conf/global_settings.py: CIFAR100_TRAIN_MEAN / _STD, the
#: CIFAR-100 training split's channel means and population standard deviations (of [0, 1]
#: pixel values), which its train.py passes to transforms.Normalize.
CIFAR100_REPO_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_REPO_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)


RECIPES: dict[str, Recipe] = {
    # Kumawat & Raman (2020), Sec. 4: Adam, lr 0.01, categorical cross-entropy, batch 64 for
    # 300 epochs then 128 for 100 ("increase the batch size instead of decaying the lr").
    # eps 1e-7 is Keras' Adam default (the paper used Keras).
    "paper": Recipe(
        "paper",
        {
            "epochs": 400,
            "batch_size": 64,
            "opt": "adam",
            "lr": 0.01,
            "opt_eps": 1e-7,
            "weight_decay": 0.0,
            "sched": "constant",
            "warmup_epochs": 0.0,
            "label_smoothing": 0.0,
        },
        batch_growth=2,
        growth_fraction=0.25,
    ),
    # Short schedule, chosen on digits (15 epochs: AdamW 98.6-99.4 % over three seeds, where
    # SGD-Nesterov at lr 0.1-0.2 reached 80-96 % and the paper recipe 95 %): AdamW with
    # decoupled weight decay on weights only, linear warm-up, cosine to zero, label smoothing.
    "fast": Recipe(
        "fast",
        {
            "epochs": 60,
            "batch_size": 64,
            "opt": "adamw",
            "lr": 3e-3,
            "opt_eps": 1e-8,
            "weight_decay": 0.05,
            "sched": "cosine",
            "warmup_epochs": 2.0,
            "label_smoothing": 0.1,
        },
    ),
    # weiaicunzai/pytorch-cifar100 (train.py, utils.py, conf/global_settings.py), the
    # source of Table 2's CIFAR-100 baseline numbers: SGD(model.parameters(), lr 0.1,
    # momentum 0.9, weight_decay 5e-4) - classical momentum, decay on every parameter -
    # batch 128 with the last partial batch kept, 200 epochs, MultiStepLR(milestones
    # [60, 120, 160], gamma 0.2) stepped with the 1-based epoch, one warm-up epoch
    # (WarmUpLR: lr * i / iters, stepped after each of the epoch's iterations, so the
    # first runs at 0), RandomCrop(32, padding=4) + RandomHorizontalFlip +
    # RandomRotation(15) then Normalize(CIFAR100_TRAIN_MEAN, CIFAR100_TRAIN_STD).
    "baseline": Recipe(
        "baseline",
        {
            "epochs": 200,
            "batch_size": 128,
            "drop_last": False,
            "opt": "momentum",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "decay_all_params": True,
            "sched": "multistep",
            "lr_gamma": 0.2,
            "warmup_epochs": 1.0,
            "warmup_lr": 0.0,
            "label_smoothing": 0.0,
            "augment": "crop_flip_rotate",
            "crop_padding": 4,
            "max_rotation": 15.0,
        },
        source_milestones=(60, 120, 160),
        dataset_defaults={
            "cifar100": {"norm_mean": CIFAR100_REPO_MEAN, "norm_std": CIFAR100_REPO_STD},
            # 8×8 digits: the same eighth of the side as 4 pixels of a 32×32 image
            "digits": {"crop_padding": 1},
        },
    ),
}


def make_config(recipe: str = "paper", **overrides: Any) -> TrainConfig:
    """Resolve ``recipe``'s defaults with ``overrides`` (``None`` values mean "not given")
    into a validated :class:`TrainConfig`. ``model``, ``dataset`` and ``output`` are
    required."""
    _check_choice("recipe", recipe, tuple(RECIPES))
    spec = RECIPES[recipe]
    given = {k: v for k, v in overrides.items() if v is not None}
    for required in ("model", "dataset", "output"):
        if required not in given:
            raise ValueError(f"argument {required} is required")
    dataset_defaults = spec.dataset_defaults.get(given["dataset"], {})
    values = {**spec.defaults, **dataset_defaults, **given, "recipe": recipe}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; expected a subset of {sorted(names)}")
    epochs = values.get("epochs", TrainConfig.epochs)
    batch = values.get("batch_size", TrainConfig.batch_size)
    values.setdefault("final_batch_size", spec.batch_growth * batch)
    values.setdefault("final_epochs", _round_half_up(spec.growth_fraction * epochs))
    if "warmup_epochs" not in given:
        # A recipe's warm-up is for its own length; a short run warms up for a quarter of it.
        values["warmup_epochs"] = min(values.get("warmup_epochs", 0.0), epochs / 4)
    if spec.source_milestones and isinstance(epochs, int):
        scale = epochs / spec.defaults["epochs"]
        values.setdefault(
            "lr_milestones",
            tuple(max(0, _round_half_up(m * scale) - 1) for m in spec.source_milestones),
        )
    for name in TUPLE_FIELDS:
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    config = TrainConfig(**values)
    config.validate()
    return config


def resolve_config(
    recipe: str | None = None, resume: str | None = None, **given: Any
) -> TrainConfig:
    """The config of a new run (``recipe``, default "paper", with ``given`` overrides) or,
    with ``resume`` (a ``last.pt``), of the saved run with ``given`` runtime options applied
    (see :func:`merge_resumed`); ``output`` then defaults to the checkpoint's folder."""
    if resume is None:
        return make_config(recipe or "paper", **given)
    from dwstft.train.checkpoint import load_checkpoint

    saved = saved_config(resume, load_checkpoint(resume)["config"])
    given = {**given, "recipe": recipe, "resume": str(resume)}
    if given.get("output") is None:
        given["output"] = str(Path(resume).parent)
    return merge_resumed(saved, given)


def saved_config(path: str | Path, values: dict[str, Any]) -> TrainConfig:
    """The validated :class:`TrainConfig` a checkpoint at ``path`` records.

    Raises:
        CheckpointError: the recorded config is not a valid one (named with the file).
    """
    try:
        config = TrainConfig.from_dict(values)
        config.validate()
    except (ValueError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} records an invalid config ({err}); it was not written "
            "by this version of dwstft or is damaged"
        ) from None
    return config


def merge_resumed(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The saved run's config with the runtime fields in ``given`` applied.

    ``given`` maps field names to values from the command line (``None``: not given). Any
    other field given with a value different from the saved one raises ValueError: a
    resumed run continues the saved settings exactly.
    """
    values = saved.to_dict()
    for name, value in given.items():
        if value is None:
            continue
        if name in RUNTIME_FIELDS:
            values[name] = value
            continue
        saved_value = values.get(name)
        if isinstance(saved_value, list):
            value = list(value)
        if saved_value != value:
            option = "--" + name.replace("_", "-")
            raise ValueError(
                f"{name} ({option}) is {value!r} but the checkpoint's run used {saved_value!r}; "
                "a resumed run keeps its settings (omit the option or start a new run)"
            )
    config = TrainConfig.from_dict(values)
    config.validate()
    return config


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")


def _check_float(name: str, value: object, low: float, high: float | None = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
