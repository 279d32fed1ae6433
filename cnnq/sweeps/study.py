"""A sweep's Optuna study: its storage (cnnq's own database), sampler, pruner and search space.

The study is named after the sweep's job and kept by Optuna's `RDBStorage` on `CNNQ_DATABASE_URL`, in
Optuna's own tables beside cnnq's (`studies`, `trials`, `trial_params`, ...). Optuna creates them; cnnq's
Alembic migrations leave them alone (`cnnq.db.tables.owned_by_cnnq`). Optuna would keep its schema
revision in `alembic_version`, which is cnnq's: cnnq's migrations always run first (every command that
records a sweep upgrades the database), so Optuna finds the table filled and leaves it, and its version
check, which would read cnnq's revision, is skipped.

Every process that asks, tells or prunes builds the same sampler and pruner from the sweep's spec. A
sampler's random state is process-local, so each ask seeds it with the sweep's seed and the trial's
number: two processes asking in turn never draw the same point, and a sweep is reproducible.
(GridSampler's seed only orders the grid, which every process must see alike: the sweep's seed.)
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy.engine import make_url

from cnnq.settings import get_settings
from cnnq.sweeps.params import grid_values
from cnnq.sweeps.spec import Param, SweepSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
log = logging.getLogger(__name__)

ASHA_REDUCTION_FACTOR = 3
"""ASHA and Hyperband keep the best third of the trials at each rung: epochs 1, 3, 9, ..."""

try:  # private to Optuna (5.0): without it every ask and tell reads the whole study again, slower only
    from optuna.storages._cached_storage import _CachedStorage
except ImportError:  # pragma: no cover
    _CachedStorage = None  # type: ignore[assignment,misc]

_storages: dict[tuple[str, int], BaseStorage] = {}


def storage() -> BaseStorage:
    """Optuna's storage on cnnq's database, made once per process (and per URL).

    Wrapped in Optuna's own `_CachedStorage`, as `load_study` would wrap it, but once per process: it keeps
    the trials that have finished (which never change again) and reads only the others and the new ones
    again, so the asks, tells and pruning checks of a long-lived process read a sweep's whole history once.
    Its one blind spot, a trial created before one that finished but committed after it was read, cannot
    happen: trials are only created by the holder of the sweep's lease (`cnnq.sweeps.trials`)."""
    url = get_settings().database_url
    key = (url, os.getpid())
    if key not in _storages:
        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite"):
            # cnnq's database is in WAL mode already; wait for a writer as cnnq's own sessions do.
            engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}}
        else:
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine_kwargs = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4}
        backend = RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=engine_kwargs,
            skip_compatibility_check=True,
        )
        _storages[key] = backend if _CachedStorage is None else _CachedStorage(backend)
    return _storages[key]


def create_study(sweep_id: str, spec: SweepSpec) -> None:
    """Record the sweep's study and enqueue its first trials (trial 0: the recipe). Each enqueued trial
    fixes the values its parameters' spaces hold; all of them, held or not, go in its user attributes,
    and its job trains with those (`cnnq.sweeps.trials`)."""
    study = optuna.create_study(
        study_name=sweep_id,
        storage=storage(),
        direction=spec.direction,
        sampler=teller(),
        pruner=pruner(spec),
    )
    for values in spec.enqueue:
        held = {name: value for name, value in values.items() if spec.param(name).contains(value)}
        study.enqueue_trial(held, user_attrs={"values": values}, skip_if_exists=False)


def load_study(
    sweep_id: str, spec: SweepSpec, sampler: optuna.samplers.BaseSampler | None = None
) -> optuna.Study:
    return optuna.load_study(
        study_name=sweep_id, storage=storage(), sampler=sampler or teller(), pruner=pruner(spec)
    )


def teller() -> optuna.samplers.BaseSampler:
    """The sampler of a study that only tells and prunes: no draw, no process-local bookkeeping
    (GridSampler's would try to stop an `optimize` loop that does not exist here)."""
    return optuna.samplers.RandomSampler()


def sampler(spec: SweepSpec, number: int) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial `number`'s values, seeded by the sweep's seed and that number."""
    seed = (spec.seed * 1_000_003 + number) % 2**32
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":  # its seed orders the grid, which every process must see alike
        return optuna.samplers.GridSampler({p.name: grid_values(p) for p in spec.params}, seed=spec.seed)
    # constant_liar: a trial still running counts as a poor one, so parallel asks spread out.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=spec.parallel > 1)


def pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.prune == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ASHA_REDUCTION_FACTOR)
    if spec.prune == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=spec.max_epochs, reduction_factor=ASHA_REDUCTION_FACTOR
        )
    if spec.prune == "median":
        return optuna.pruners.MedianPruner()
    return optuna.pruners.NopPruner()


def ask(study: optuna.Study, spec: SweepSpec, trials: int) -> optuna.trial.Trial:
    """A new trial of the study, which holds `trials` trials (the next enqueued one first). GridSampler
    picks the trial's point as it begins: seeded by the number a new trial gets."""
    study.sampler = sampler(spec, trials)
    return study.ask()


def draw(trial: optuna.trial.Trial, spec: SweepSpec) -> dict[str, Any]:
    """A trial's parameter values, drawn by the sampler seeded by the trial's number (`suggest`)."""
    trial.study.sampler = sampler(spec, trial.number)
    return suggest(trial, spec)


def suggest(trial: optuna.trial.Trial, spec: SweepSpec) -> dict[str, Any]:
    """A trial's parameter values: suggested by the study's sampler, or an enqueued trial's own (all of
    them, the ones outside the search space included: trial 0 is the recipe)."""
    enqueued = trial.user_attrs.get("values")
    values = {}
    for param in spec.params:
        if enqueued is None or param.contains(enqueued[param.name]):  # as `create_study` enqueued it
            values[param.name] = _suggest(trial, param)
    return {**(enqueued or {}), **values}


def _suggest(trial: optuna.trial.Trial, param: Param) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(param.name, param.choices)
    assert param.low is not None and param.high is not None
    log_scale = param.distribution.startswith("log")
    if param.whole:
        return trial.suggest_int(param.name, int(param.low), int(param.high), log=log_scale)
    return trial.suggest_float(param.name, param.low, param.high, log=log_scale)
