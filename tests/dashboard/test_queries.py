"""The dashboard's pure pieces: formatting, the options table, upload decoding, the launch command."""

from __future__ import annotations

import io
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cnnq.dashboard.launch import APP, streamlit_command
from cnnq.dashboard.queries import differing_options, format_bytes, format_duration, per_class_frame
from cnnq.dashboard.xray_check import decode_upload
from cnnq.errors import UserError


def test_durations_and_sizes_read_like_a_person_writes_them() -> None:
    assert format_duration(None) == ""
    assert format_duration(timedelta(seconds=7.4)) == "7s"
    assert format_duration(timedelta(minutes=3, seconds=5)) == "3m 05s"
    assert format_duration(timedelta(hours=2, minutes=1)) == "2h 01m"
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"


def test_differing_options_keeps_only_what_changed() -> None:
    table = differing_options(
        {
            "train-a": {"model": "lenet", "lr": 0.01, "epochs": 5, "augment": None},
            "train-b": {"model": "lenet", "lr": 0.001, "epochs": 5, "augment": "flip"},
        }
    )
    assert list(table.columns) == ["job", "lr", "augment"]
    assert table.to_dict("records") == [
        {"job": "train-a", "lr": "0.01", "augment": ""},
        {"job": "train-b", "lr": "0.001", "augment": "flip"},
    ]


def test_per_class_table_reads_rows_or_a_mapping() -> None:
    rows = [{"class": "a", "recall": 1.0}, {"class": "b", "recall": 0.5}]
    mapping = {"a": {"recall": 1.0}, "b": {"recall": 0.5}}
    expected = pd.DataFrame(rows)
    pd.testing.assert_frame_equal(per_class_frame({"per_class": rows}), expected)
    pd.testing.assert_frame_equal(per_class_frame({"per_class": mapping}), expected)


def test_launch_command_serves_this_app_headless_without_telemetry() -> None:
    command = streamlit_command("0.0.0.0", 8123)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.headless"] == "true"
    assert options["--server.port"] == "8123"
    assert options["--server.address"] == "0.0.0.0"
    assert options["--browser.gatherUsageStats"] == "false"
    assert APP.is_file()


def test_an_upload_is_decoded_in_a_temporary_folder_that_is_then_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where TemporaryDirectory creates folders
    buffer = io.BytesIO()
    Image.new("L", (40, 30), 128).save(buffer, format="PNG")
    image = decode_upload("../../etc/chest.png", buffer.getvalue())
    assert image.size == (40, 30)
    with pytest.raises(UserError, match=r"^notes\.txt is not an image cnnq can read \(.+\); upload a PNG"):
        decode_upload("notes.txt", b"just words\n")
    assert list(tmp_path.iterdir()) == []


def test_clinical_figures_at_a_threshold_with_their_intervals() -> None:
    from cnnq.dashboard.clinical import (
        class_counts,
        operating_point,
        precision_recall,
        wilson_interval,
    )

    low, high = wilson_interval(8, 10)  # the textbook example: 0.490 to 0.943
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    positives, negatives = class_counts([[40, 10], [5, 45]], positive_index=1)
    assert (positives, negatives) == (50, 50)
    roc = {"fpr": [0.0, 0.1, 0.2, 1.0], "tpr": [0.0, 0.8, 0.9, 1.0], "thresholds": [None, 0.7, 0.5, 0.1]}
    point = operating_point(roc, 0.5, positives, negatives)
    assert (point.true_positives, point.false_positives, point.true_negatives, point.false_negatives) == (
        45,
        10,
        40,
        5,
    )
    assert point.sensitivity == 0.9 and point.specificity == 0.8
    assert point.ppv == 45 / 55 and point.npv == 40 / 45
    assert operating_point(roc, 0.6, positives, negatives).sensitivity == 0.8  # a stricter threshold
    from cnnq.dashboard.clinical import confusion_point

    exact = confusion_point([[40, 10], [5, 45]], 1, 0.5)
    assert (exact.sensitivity, exact.specificity, exact.ppv, exact.npv) == (0.9, 0.8, 45 / 55, 40 / 45)
    recall, precision = precision_recall(roc, positives, negatives)
    assert recall == [0.8, 0.9, 1.0] and precision[0] == 40 / 45


def test_failures_read_as_one_plain_sentence() -> None:
    from cnnq.dashboard.job_facts import failure_sentence

    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/app/cnnq/data/mnist.py", line 40, in read_images\n'
        "    assert magic == 2051\n"
        "AssertionError"
    )
    sentence = failure_sentence("AssertionError", "AssertionError", traceback)
    assert sentence == (
        "The job failed: a check in the code failed in /app/cnnq/data/mnist.py, line 40: "
        "`assert magic == 2051` (AssertionError without a message)."
    )
    assert (
        failure_sentence("FileNotFoundError", "no such file: /data/x.png", None)
        == "No such file: /data/x.png."
    )
