"""Annotation loading: class map, validation errors, clipping."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from asl_tal.data.annotations import AnnotationError, ClassMap, load_annotations, read_json


def test_loads_subsets_and_class_map_from_label_ids(write_json):
    path = write_json(
        {
            "a": {
                "subset": "Training",
                "duration": 10.0,
                "fps": 25,
                "annotations": [
                    {"label": "Jump", "label_id": 2, "segment": [1.0, 2.5]},
                    {"label": "Run", "label_id": 0, "segment": [3.0, 4.0]},
                ],
            },
            "b": {"subset": "test", "duration": 5.0, "annotations": []},
        }
    )
    videos, class_map = load_annotations(path, ["training"])
    assert list(videos) == ["a"]
    assert class_map.names == ("Run", "class_1", "Jump")
    np.testing.assert_array_equal(videos["a"].labels, [2, 0])
    np.testing.assert_array_equal(videos["a"].segments, [[1.0, 2.5], [3.0, 4.0]])
    assert videos["a"].subset == "training"
    assert videos["a"].fps == 25.0
    assert videos["a"].num_clipped == 0


def test_sorted_names_without_label_ids(write_json, entry):
    path = write_json({"a": entry("training", 10, [("b", 1, 2), ("a", 3, 4)])})
    videos, class_map = load_annotations(path)
    assert class_map.names == ("a", "b")
    np.testing.assert_array_equal(videos["a"].labels, [1, 0])


@pytest.mark.parametrize(
    ("segment", "phrase"),
    [
        ([3.0, 3.0], "end <= start"),
        ([4.0, 2.0], "end <= start"),
        ([1.0, 30.0], "outside the video"),  # 20 s past a 10 s video: far beyond 1 s
        ([-5.0, 2.0], "outside the video"),
        ([10.2, 10.5], "entirely outside"),
        (["x", 2.0], "numbers"),
        ([1.0], "[start, end]"),
        (["1", 2.0], "numbers"),  # a number in a string is not a number
        ([1.0, True], "numbers"),  # nor is a boolean
        ("12", "[start, end]"),
        ([1.0, float("inf")], "not finite"),
    ],
)
def test_bad_segment_names_file_video_field(write_json, entry, segment, phrase):
    database = {"vid7": entry("training", 10, [("a", 1, 2)])}
    database["vid7"]["annotations"].append({"label": "a", "segment": segment})
    path = write_json(database)
    with pytest.raises(AnnotationError) as err:
        load_annotations(path)
    message = str(err.value)
    assert str(path) in message
    assert "'vid7'" in message
    assert "annotation 1" in message
    assert "'segment'" in message
    assert phrase in message


def test_slightly_outside_is_clipped_counted_and_logged(write_json, entry, caplog):
    # duration 10 s: margin = max(1.0, 0.05 * 10) = 1.0 s; 10.4 and -0.3 are within it.
    path = write_json({"v": entry("training", 10, [("a", -0.3, 2), ("a", 3, 10.4), ("a", 4, 5)])})
    with caplog.at_level(logging.WARNING, logger="asl_tal.data.annotations"):
        videos, _ = load_annotations(path)
    np.testing.assert_array_equal(videos["v"].segments, [[0, 2], [3, 10], [4, 5]])
    assert videos["v"].num_clipped == 2
    assert "clipped 2 segment(s) in 1 video(s)" in caplog.text

    raw, _ = load_annotations(path, clip_to_duration=False)
    np.testing.assert_array_equal(raw["v"].segments, [[-0.3, 2], [3, 10.4], [4, 5]])
    assert raw["v"].num_clipped == 0


def test_relative_tolerance_for_long_videos(write_json, entry):
    # duration 100 s: margin = max(1.0, 0.05 * 100) = 5 s, so 104 s is clipped and 106 s fails.
    path = write_json({"v": entry("training", 100, [("a", 90, 104)])})
    videos, _ = load_annotations(path)
    np.testing.assert_array_equal(videos["v"].segments, [[90, 100]])
    path = write_json({"v": entry("training", 100, [("a", 90, 106)])})
    with pytest.raises(AnnotationError, match="more than 5 s"):
        load_annotations(path)


def test_unknown_label_with_given_class_map(write_json, entry):
    path = write_json({"v3": entry("training", 10, [("Dance", 1, 2)])})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, class_map=ClassMap(("Run", "Jump")))
    assert "'v3'" in str(err.value) and "unknown label 'Dance'" in str(err.value)
    assert str(path) in str(err.value)


def test_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"database": {"a": ')
    with pytest.raises(AnnotationError, match="malformed JSON") as err:
        load_annotations(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        load_annotations(tmp_path / "nope.json")


def test_empty_subset_names_field_and_available_subsets(write_json, entry):
    path = write_json({"a": entry("training", 10, [("x", 1, 2)])})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, ["validation"])
    message = str(err.value)
    assert str(path) in message and "'subset'" in message
    assert "['validation']" in message and "['training']" in message


def test_one_empty_subset_among_several_is_logged(write_json, entry, caplog):
    path = write_json({"a": entry("training", 10, [("x", 1, 2)])})
    with caplog.at_level(logging.WARNING, logger="asl_tal.data.annotations"):
        videos, _ = load_annotations(path, ["training", "val"])
    assert list(videos) == ["a"]
    assert "['val']" in caplog.text


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("duration", -1, "'duration' must be > 0"),
        ("fps", "abc", "'fps' must be a number"),
        ("duration", "10", "'duration' must be a number"),
        ("fps", True, "'fps' must be a number"),
        ("duration", float("nan"), "'duration' must be > 0"),
    ],
)
def test_bad_video_fields(write_json, entry, field, value, phrase):
    database = {"v": entry("training", 10, [("x", 1, 2)])}
    database["v"][field] = value
    with pytest.raises(AnnotationError, match=phrase) as err:
        load_annotations(write_json(database))
    assert "'v'" in str(err.value)


def test_conflicting_label_ids(write_json):
    database = {
        "v": {
            "subset": "training",
            "duration": 10,
            "annotations": [
                {"label": "a", "label_id": 0, "segment": [1, 2]},
                {"label": "b", "label_id": 0, "segment": [3, 4]},
            ],
        }
    }
    with pytest.raises(AnnotationError, match="'label_id' 0 is used by both 'a' and 'b'"):
        load_annotations(write_json(database))
    database["v"]["annotations"][1] = {"label": "a", "label_id": 1, "segment": [3, 4]}
    with pytest.raises(AnnotationError, match="'label_id' 1 disagrees"):
        load_annotations(write_json(database))


def test_missing_database(write_json, tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"videos": {}}')
    with pytest.raises(AnnotationError, match="'database'"):
        load_annotations(path)


@pytest.mark.parametrize("label_id", [float("nan"), float("inf"), 1.5, True, "1"])
def test_label_id_must_be_an_integer(write_json, label_id):
    database = {"v": {"subset": "training", "duration": 10, "annotations": []}}
    database["v"]["annotations"].append({"label": "a", "label_id": label_id, "segment": [1, 2]})
    with pytest.raises(AnnotationError, match="'label_id' must be an integer") as err:
        load_annotations(write_json(database))
    assert "'v'" in str(err.value)


# Duplicate keys: the files are written by hand, json.dumps cannot repeat a key.
VIDEO = '{"subset": "test", "duration": 10, "annotations": [{"label": "a", "segment": [1, 2]}]}'


@pytest.mark.parametrize(
    ("text", "key", "where"),
    [
        (f'{{"database": {{"v1": {VIDEO}, "v2": {VIDEO}, "v1": {VIDEO}}}}}', "'v1'", "/database"),
        (
            '{"database": {"v1": {"subset": "test", "duration": 10, "annotations": '
            '[{"label": "a", "segment": [1, 2], "label": "b"}]}}}',
            "'label'",
            "/database/v1/annotations/0",
        ),
        (
            '{"database": {"v1": {"subset": "test", "duration": 10, "subset": "training", '
            '"annotations": []}}}',
            "'subset'",
            "/database/v1",
        ),
        (f'{{"database": {{}}, "database": {{"v1": {VIDEO}}}}}', "'database'", "top-level"),
        # "/" and "~" in a key are escaped as JSON Pointer writes them (RFC 6901)
        ('{"database": {"a/b~c": {"x": 1, "x": 2}}}', "'x'", "/database/a~1b~0c"),
    ],
)
def test_duplicate_key_names_key_and_file(tmp_path, text, key, where):
    path = tmp_path / "dup.json"
    path.write_text(text)
    with pytest.raises(AnnotationError) as err:
        load_annotations(path)
    message = str(err.value)
    assert message.startswith(f"{path}: duplicate key {key}")
    assert where in message and "\n" not in message


def test_duplicate_key_counts_the_copies(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"a": 1, "b": 2, "a": 3, "a": 4}')
    with pytest.raises(AnnotationError, match="'a' in the top-level object \\(given 3 times"):
        read_json(path)


def test_same_key_in_different_objects_is_fine(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text('{"database": {"v1": {"duration": 1}, "v2": {"duration": 2}}}')
    assert read_json(path) == {"database": {"v1": {"duration": 1}, "v2": {"duration": 2}}}


@pytest.mark.parametrize("opening", ["[", '{"a": '])
def test_very_deep_json_is_an_annotation_error(tmp_path, opening):
    path = tmp_path / "deep.json"
    closing = "]" if opening == "[" else "}"
    path.write_text(opening * 100_000 + "1" + closing * 100_000)
    with pytest.raises(AnnotationError, match="nested too deeply") as err:
        load_annotations(path)
    assert str(path) in str(err.value)


def test_read_json_raises_the_given_error_class(tmp_path):
    class ResultsError(ValueError):
        pass

    path = tmp_path / "r.json"
    path.write_text("{")
    with pytest.raises(ResultsError, match=r"r\.json: malformed JSON"):
        read_json(path, error=ResultsError, kind="results file")
    with pytest.raises(ResultsError, match="results file not found"):
        read_json(tmp_path / "absent.json", error=ResultsError, kind="results file")


def test_invalid_utf8_is_malformed_json(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"database": {"caf\xe9": {}}}')
    with pytest.raises(AnnotationError, match="malformed JSON") as err:
        load_annotations(path)
    assert str(path) in str(err.value)


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"database": {}}).encode())
    assert read_json(path) == {"database": {}}
