"""Lab 02's threshold explorer in the kernel, with the messages a browser sends (issue 23): on its first
render and after "cheapest threshold" the browser sends back the slider's snapped position (0.1122 for a
threshold of 0.1077); the text must keep the threshold it names and that threshold's figures."""

import math

import pytest

from mlops_lab import data, training, widgets


@pytest.fixture(scope="module")
def explorer_inputs():
    train, valid, _ = data.time_split(data.course_dataset())
    return training.train("logistic_regression", train, valid).pipeline, valid


def _shown(box) -> str:
    return box.children[1].value


def _snapped(slider, value: float) -> float:
    exponent = slider.min + round((math.log10(value) - slider.min) / slider.step) * slider.step
    return slider.base ** exponent


def test_the_browsers_snapped_echo_keeps_the_cheapest_threshold(explorer_inputs):
    pipeline, valid = explorer_inputs
    box = widgets.threshold_explorer(pipeline, valid)
    slider, fee, button = box.children[0].children
    assert slider.readout is False  # the slider's own readout would show the snapped value
    first = _shown(box)
    best = slider.value
    slider.value = _snapped(slider, best)  # what the browser sends on first render
    assert _shown(box) == first
    slider.value = 0.5  # a learner's move
    assert "threshold 0.5," in _shown(box)
    button.click()
    slider.value = _snapped(slider, best)  # the browser's echo after "cheapest threshold"
    assert _shown(box) == first
    slider.value = _snapped(slider, best) * 10 ** slider.step  # one step right: a move
    assert _shown(box) != first
