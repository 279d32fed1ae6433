"""The dashboard's Vega-Lite charts as Streamlit sends them, read back for the tests: each chart by its
title, and each mark it draws with its panel, encoding and the rows it draws."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

COMPOSITIONS = ("layer", "hconcat", "vconcat", "concat")


@dataclass(frozen=True)
class Mark:
    """One mark of a chart: the title of the panel it is drawn in, its type, encoding and data."""

    panel: str
    type: str
    encoding: dict[str, Any]
    data: pd.DataFrame

    def _field(self, channel: str) -> pd.Series:
        return self.data[self.encoding[channel]["field"]]

    @property
    def x(self) -> pd.Series:
        """What the mark draws on x: its data's column the encoding names."""
        return self._field("x")

    @property
    def y(self) -> pd.Series:
        return self._field("y")


@dataclass(frozen=True)
class Chart:
    title: str
    spec: dict[str, Any]
    marks: list[Mark]

    def panels(self) -> list[str]:
        """The panels' titles, in order."""
        return list(dict.fromkeys(m.panel for m in self.marks if m.panel != self.title))

    def curves(self) -> dict[str, Mark]:
        """Each named curve (a line, points or bars whose data has a `curve` column) by its name, with
        its own rows."""
        found: dict[str, Mark] = {}
        for mark in self.marks:
            if mark.type in ("text", "rule") or "curve" not in mark.data.columns:
                continue
            for name, rows in mark.data.groupby("curve", sort=False):
                assert name not in found, f"two marks draw the curve {name!r}"
                found[str(name)] = Mark(mark.panel, mark.type, mark.encoding, rows.reset_index(drop=True))
        return found

    def marks_of(self, type_: str, panel: str | None = None) -> list[Mark]:
        return [m for m in self.marks if m.type == type_ and (panel is None or m.panel == panel)]


def _title(spec: dict[str, Any]) -> str | None:
    title = spec.get("title")
    return title.get("text") if isinstance(title, dict) else title


def _walk(
    spec: dict[str, Any], data: str | None, panel: str, datasets: dict[str, pd.DataFrame]
) -> Iterator[Mark]:
    data = spec.get("data", {}).get("name", data)
    panel = _title(spec) or panel
    for key in COMPOSITIONS:
        for child in spec.get(key, []):
            yield from _walk(child, data, panel, datasets)
    if "mark" in spec:
        mark = spec["mark"]
        rows = datasets[data] if data is not None else pd.DataFrame()
        yield Mark(panel, mark if isinstance(mark, str) else mark["type"], spec.get("encoding", {}), rows)


def charts(app: AppTest) -> dict[str, Chart]:
    """The page's charts by title."""
    found = {}
    for element in app.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        datasets = {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in element.proto.datasets}
        title = _title(spec)
        assert title, spec
        found[title] = Chart(title, spec, list(_walk(spec, None, title, datasets)))
    return found
