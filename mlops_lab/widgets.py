"""ipywidgets explorers. Thin: every number comes from a plain function in the modules above."""

from __future__ import annotations

import math
import threading

from .training import REVIEW_FEE, choose_threshold, days_covered, metrics, predict_scores


def describe_threshold(m: dict, threshold: float, review_fee: float) -> str:
    """The text the threshold explorer shows (a plain function, tested directly)."""
    return (f"threshold {threshold:.6g}, review fee EUR {review_fee:.0f}: flags {m['flag_rate']:.1%} of payments, "
            f"catching {m['recall']:.0%} of fraud at {m['precision']:.1%} precision; expected cost "
            f"EUR {m['cost']:,.0f} (EUR {m['cost_per_1000']:,.0f} per 1,000 payments)")


def threshold_explorer(pipeline, frame, review_fee: float = REVIEW_FEE):
    """Slide the decision threshold and the review fee; see recall, precision and cost move."""
    import ipywidgets as w
    from IPython.display import display

    scores = predict_scores(pipeline, frame)
    y, amounts = frame["is_fraud"], frame["amount"]
    days = days_covered(frame)
    best = choose_threshold(y, scores, amounts, review_fee, days=days)
    step = 0.05  # the slider's step, in powers of ten
    # No readout: the slider snaps to its step (0.1077 shows as 0.1122), so the one threshold shown is
    # the text's, which names the exact threshold its figures are computed at.
    threshold = w.FloatLogSlider(value=max(best, 1e-4), base=10, min=-4, max=0, step=step,
                                 description="threshold", readout=False)
    fee = w.FloatSlider(value=review_fee, min=1, max=50, step=1, description="review fee")
    best_button = w.Button(description="cheapest threshold")
    text = w.HTML()
    state = {"threshold": best}
    lock = threading.Lock()  # comm callbacks may come from another thread than the cell's: one render at a time

    def update(*_):
        with lock:
            m = metrics(y, scores, amounts, state["threshold"], fee.value)
            text.value = f"<pre>{describe_threshold(m, state['threshold'], fee.value)}</pre>"

    def slide(change):
        # The browser sends back the snapped position of the threshold set here (on first render, and
        # after "cheapest threshold"): that is the same slider position, not a learner's move.
        exponent = math.log10(max(state["threshold"], 1e-4))
        snapped = threshold.min + round((exponent - threshold.min) / step) * step
        if min(abs(math.log10(change["new"]) - e) for e in (exponent, snapped)) < 1e-6:
            return
        state["threshold"] = change["new"]
        update()

    def jump(_):
        state["threshold"] = choose_threshold(y, scores, amounts, fee.value, days=days)
        threshold.value = max(state["threshold"], 1e-4)
        update()

    threshold.observe(slide, "value")
    fee.observe(update, "value")
    best_button.on_click(jump)
    update()
    box = w.VBox([w.HBox([threshold, fee, best_button]), text])
    display(box)
    return box
