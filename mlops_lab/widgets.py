"""ipywidgets explorers. Thin: every number comes from a plain function in the modules above."""

from __future__ import annotations

from .training import REVIEW_FEE, choose_threshold, metrics, predict_scores


def describe_threshold(m: dict, threshold: float, review_fee: float) -> str:
    """The text the threshold explorer shows (a plain function, tested directly)."""
    return (f"threshold {threshold:.4f}, review fee EUR {review_fee:.0f}: flags catch {m['recall']:.0%} of fraud "
            f"at {m['precision']:.1%} precision; expected cost EUR {m['cost']:,.0f} "
            f"(EUR {m['cost_per_1000']:,.0f} per 1,000 payments)")


def threshold_explorer(pipeline, frame, review_fee: float = REVIEW_FEE):
    """Slide the decision threshold and the review fee; see recall, precision and cost move."""
    import ipywidgets as w
    from IPython.display import display

    scores = predict_scores(pipeline, frame)
    y, amounts = frame["is_fraud"], frame["amount"]
    best = choose_threshold(y, scores, amounts, review_fee)
    threshold = w.FloatLogSlider(value=max(best, 1e-4), base=10, min=-4, max=0, step=0.05,
                                 description="threshold", readout_format=".4f")
    fee = w.FloatSlider(value=review_fee, min=1, max=50, step=1, description="review fee")
    best_button = w.Button(description="cheapest threshold")
    text = w.HTML()

    def update(*_):
        m = metrics(y, scores, amounts, threshold.value, fee.value)
        text.value = f"<pre>{describe_threshold(m, threshold.value, fee.value)}</pre>"

    def jump(_):
        threshold.value = max(choose_threshold(y, scores, amounts, fee.value), 1e-4)

    threshold.observe(update, "value")
    fee.observe(update, "value")
    best_button.on_click(jump)
    update()
    box = w.VBox([w.HBox([threshold, fee, best_button]), text])
    display(box)
    return box
