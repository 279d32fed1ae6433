"""The tables of `cnnq.db.tables` as mapped classes, for code that loads, changes and adds rows as
objects (workers, sweeps, the dashboard). Commands that only read and write rows use the tables with
Core statements and never import this module, nor the ORM (`tests/cli/test_import_floor.py`)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from cnnq.db import tables


class Base(DeclarativeBase):
    metadata = tables.metadata


class Job(Base):
    __table__ = tables.jobs


class Metric(Base):
    __table__ = tables.metrics


class Artifact(Base):
    __table__ = tables.artifacts


class Prediction(Base):
    __table__ = tables.predictions


class UnshardedInputs(Base):
    __table__ = tables.unsharded_inputs


class LogLine(Base):
    __table__ = tables.logs


class Worker(Base):
    __table__ = tables.workers


class Sweep(Base):
    __table__ = tables.sweeps


class SweepTrial(Base):
    __table__ = tables.sweep_trials
