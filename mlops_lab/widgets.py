"""ipywidgets explorers. Thin: every number comes from a plain function in the modules above."""

from __future__ import annotations

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
    threshold = w.FloatLogSlider(value=max(best, 1e-4), base=10, min=-4, max=0, step=0.05,
                                 description="threshold", readout_format=".4f")
    fee = w.FloatSlider(value=review_fee, min=1, max=50, step=1, description="review fee")
    best_button = w.Button(description="cheapest threshold")
    text = w.HTML()
    # The slider snaps to its log step (0.0022377 would become 0.0022387): the text follows the exact
    # threshold that was chosen, and only a learner's own move of the slider replaces it.
    state = {"threshold": best, "syncing": False}

    def update(*_):
        m = metrics(y, scores, amounts, state["threshold"], fee.value)
        text.value = f"<pre>{describe_threshold(m, state['threshold'], fee.value)}</pre>"

    def slide(change):
        if not state["syncing"]:
            state["threshold"] = change["new"]
            update()

    def jump(_):
        state["threshold"] = choose_threshold(y, scores, amounts, fee.value, days=days)
        state["syncing"] = True
        try:
            threshold.value = max(state["threshold"], 1e-4)
        finally:
            state["syncing"] = False
        update()

    threshold.observe(slide, "value")
    fee.observe(update, "value")
    best_button.on_click(jump)
    update()
    box = w.VBox([w.HBox([threshold, fee, best_button]), text])
    display(box)
    return box
