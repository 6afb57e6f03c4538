"""Lab 08: Closing the loop. Write the canary verdict the loop runs, read the shadow log, verify a
rollback drill from ``/version``, and pull the facts of a postmortem out of the event log.

Every check runs the learner's function on planted cases (live figures, log rows, ``/version``
answers, event logs) built here: nothing is read from or written to the learner's workspace."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pandas as pd

import mlops_lab as lab  # noqa: F401 - the solution texts run in this module's namespace

from . import NotAttempted, Trial, _blank, call, differential, exercise, require_attempt, right, wrong

# ------------------------------------------------------------------ 8.1 the canary verdict


def _figures(version, requests, errors, p99_ms, flag_rate):
    from ..pipeline import LiveFigures

    return LiveFigures(version=version, requests=requests, errors=errors,
                       error_rate=errors / requests if requests else float("nan"), p99_ms=p99_ms, flag_rate=flag_rate)


def check_policy(**changes):
    """The policy the 8.1 cases are judged under (the loop's own Policy, with stated canary bounds)."""
    from ..pipeline import Policy

    bounds = dict(canary_min_requests=300, max_error_rate_increase=0.005, max_p99_ms=100.0, max_flag_rate_ratio=1.5)
    return dataclasses.replace(Policy(), **{**bounds, **changes})


def canary_cases():
    """(name, champion, canary, policy, promote?, why): live figures a canary week can end with."""
    nan = float("nan")
    return [
        ("a healthy canary", _figures("3", 9_000, 9, 8.0, 0.020), _figures("4", 1_000, 1, 9.0, 0.022),
         check_policy(), True, "every figure is within the policy's bounds"),
        ("a canary a little worse on errors, within the margin", _figures("3", 9_000, 45, 8.0, 0.020),
         _figures("4", 1_000, 8, 8.5, 0.021), check_policy(), True,
         "0.8% errors against the champion's 0.5% is within the allowed increase of 0.5 points "
         "(`policy.max_error_rate_increase`): on 1,000 requests, 3 errors more is noise, so a rule "
         "that refuses any increase rolls back good models"),
        ("a candidate that catches the new card testing", _figures("3", 9_000, 0, 8.0, 0.020),
         _figures("4", 1_000, 0, 8.5, 0.028), check_policy(), True,
         "it flags 1.4 times as often as the champion, within `policy.max_flag_rate_ratio` (1.5): a "
         "model that catches a new fraud pattern flags more, and that is the point of retraining"),
        ("a canary that fails 5% of its requests", _figures("3", 9_000, 90, 8.0, 0.020),
         _figures("4", 1_000, 50, 8.0, 0.020), check_policy(), False,
         "5.0% of its requests failed against the champion's 1.0%. Compare error *rates*: the canary "
         "answers only a share of the traffic, so its error count (50) is smaller than the champion's "
         "(90) even when it fails five times as often"),
        ("a canary over the latency budget", _figures("3", 9_000, 0, 90.0, 0.020),
         _figures("4", 1_000, 0, 140.0, 0.020), check_policy(), False,
         "its p99 of 140 ms is over the budget `policy.max_p99_ms` (100 ms): the card network waits "
         "100 ms, whatever the champion does"),
        ("a stricter latency budget", _figures("3", 9_000, 0, 20.0, 0.020), _figures("4", 1_000, 0, 70.0, 0.020),
         check_policy(max_p99_ms=50.0), False,
         "this policy's `max_p99_ms` is 50 ms and the canary's p99 is 70 ms: read the bounds from "
         "`policy`, do not write 100 into the rule"),
        ("a canary that floods the review team", _figures("3", 9_000, 0, 8.0, 0.020),
         _figures("4", 1_000, 0, 8.0, 0.070), check_policy(), False,
         "it flags 3.5 times as often as the champion (7.0% against 2.0%), over "
         "`policy.max_flag_rate_ratio` (1.5): the reviewers cannot absorb that"),
        ("a canary that stops flagging", _figures("3", 9_000, 0, 8.0, 0.020), _figures("4", 1_000, 0, 8.0, 0.004),
         check_policy(), False,
         "it flags 5 times less often than the champion (0.4% against 2.0%): a model that stops "
         "flagging lets fraud through. The flag-rate bound works in both directions: between "
         "champion / max_flag_rate_ratio and champion x max_flag_rate_ratio"),
        ("a canary that flags a third less", _figures("3", 9_000, 0, 8.0, 0.020), _figures("4", 1_000, 0, 8.0, 0.012),
         check_policy(), False,
         "it flags 0.6 times as often as the champion (1.2% against 2.0%), below champion / "
         "max_flag_rate_ratio (1.33%). 'Within a factor of 1.5 either way' is a ratio, not a difference: "
         "0.8 points is within 0.5 x 2.0% of the champion, but 1.2% is not within a factor of 1.5 of 2.0%"),
        ("a canary that answered 40 requests", _figures("3", 9_000, 0, 8.0, 0.020),
         _figures("4", 40, 0, 8.0, 0.025), check_policy(), False,
         "40 requests are too few to judge (`policy.canary_min_requests` is 300): no errors in 40 "
         "requests says little about 1% errors. Not enough evidence is a reason not to promote"),
        ("a canary that answered nothing", _figures("3", 9_000, 0, 8.0, 0.020), _figures("4", 0, 0, nan, nan),
         check_policy(), False,
         "it answered no request at all (its p99 and flag rate are NaN): no evidence, no promotion"),
        ("a canary whose latency was not measured", _figures("3", 9_000, 0, 8.0, 0.020),
         _figures("4", 1_000, 0, nan, 0.021), check_policy(), False,
         "its p99 is NaN (not measured), and every comparison with NaN is False, so `p99 > budget` "
         "lets it through. Ask the other way round: promote only when `p99 <= budget` holds"),
        ("a policy that asks for more evidence", _figures("3", 9_000, 0, 8.0, 0.020),
         _figures("4", 1_000, 0, 8.0, 0.021), check_policy(canary_min_requests=2_000), False,
         "this policy's `canary_min_requests` is 2,000 and the canary answered 1,000 requests: read the "
         "minimum from `policy`, as a count of requests"),
    ]


def _reference_canary_verdict(champion, canary, policy):
    if canary.requests < policy.canary_min_requests:
        return False, [f"only {canary.requests} canary requests; {policy.canary_min_requests} needed to judge"]
    checks = {  # each check's verdict and its reason, kept on a promotion too (the log says why)
        f"error rate {canary.error_rate:.2%} vs champion {champion.error_rate:.2%}":
            canary.error_rate <= champion.error_rate + policy.max_error_rate_increase,
        f"p99 {canary.p99_ms:.0f} ms, budget {policy.max_p99_ms:.0f} ms": canary.p99_ms <= policy.max_p99_ms,
        f"flags {canary.flag_rate / champion.flag_rate:.2f} times as often as the champion":
            1 / policy.max_flag_rate_ratio <= canary.flag_rate / champion.flag_rate <= policy.max_flag_rate_ratio,
    }
    return all(checks.values()), [f"{'ok' if ok else 'FAIL'}: {reason}" for reason, ok in checks.items()]


def _difference_not_ratio(champion, canary, policy):
    if canary.requests < policy.canary_min_requests:
        return False, ["too few requests"]
    reasons = []
    if canary.error_rate > champion.error_rate + policy.max_error_rate_increase:
        reasons.append("errors")
    if not canary.p99_ms <= policy.max_p99_ms:
        reasons.append("slow")
    if not abs(canary.flag_rate - champion.flag_rate) <= (policy.max_flag_rate_ratio - 1) * champion.flag_rate:
        reasons.append("flag rate")
    return not reasons, reasons


def _counts_not_rates(champion, canary, policy):
    if canary.requests < policy.canary_min_requests:
        return False, ["too few requests"]
    ok = (canary.errors <= champion.errors and canary.p99_ms <= policy.max_p99_ms
          and 1 / policy.max_flag_rate_ratio <= canary.flag_rate / champion.flag_rate <= policy.max_flag_rate_ratio)
    return ok, [] if ok else ["worse than the champion"]


def _hard_coded_budget(champion, canary, policy):
    if canary.requests < policy.canary_min_requests:
        return False, ["too few requests"]
    ok = (canary.error_rate <= champion.error_rate + policy.max_error_rate_increase and canary.p99_ms <= 100
          and 1 / policy.max_flag_rate_ratio <= canary.flag_rate / champion.flag_rate <= policy.max_flag_rate_ratio)
    return ok, [] if ok else ["worse than the champion"]


def _no_minimum_traffic(champion, canary, policy):
    reasons = []
    if canary.error_rate > champion.error_rate + policy.max_error_rate_increase:
        reasons.append("errors")
    if not canary.p99_ms <= policy.max_p99_ms:
        reasons.append("slow")
    if not 1 / policy.max_flag_rate_ratio <= canary.flag_rate / champion.flag_rate <= policy.max_flag_rate_ratio:
        reasons.append("flag rate")
    return not reasons, reasons


def _upward_only(champion, canary, policy):
    if canary.requests < policy.canary_min_requests:
        return False, ["too few requests"]
    reasons = []
    if canary.error_rate > champion.error_rate + policy.max_error_rate_increase:
        reasons.append("errors")
    if not canary.p99_ms <= policy.max_p99_ms:
        reasons.append("slow")
    if canary.flag_rate > policy.max_flag_rate_ratio * champion.flag_rate:
        reasons.append("flags too much")
    return not reasons, reasons


def _never_worse(champion, canary, policy):
    if canary.requests < policy.canary_min_requests:
        return False, ["too few requests"]
    ok = (canary.error_rate <= champion.error_rate and canary.p99_ms <= policy.max_p99_ms
          and 1 / policy.max_flag_rate_ratio <= canary.flag_rate / champion.flag_rate <= policy.max_flag_rate_ratio)
    return ok, [] if ok else ["worse than the champion"]


def _nan_lets_through(champion, canary, policy):
    reasons = []
    if canary.requests < policy.canary_min_requests:
        reasons.append("too few requests")
    if canary.error_rate - champion.error_rate > policy.max_error_rate_increase:
        reasons.append("errors")
    if canary.p99_ms > policy.max_p99_ms:
        reasons.append("slow")
    ratio = canary.flag_rate / champion.flag_rate
    if ratio > policy.max_flag_rate_ratio or ratio < 1 / policy.max_flag_rate_ratio:
        reasons.append("flag rate")
    return len(reasons) == 0, reasons


def _slow_champion_excuses(champion, canary, policy):
    stretched = max(policy.max_p99_ms, 2 * champion.p99_ms)  # "no slower than twice the champion"
    return _reference_canary_verdict(champion, canary, dataclasses.replace(policy, max_p99_ms=stretched))


def _share_of_traffic(champion, canary, policy):
    if canary.requests / (canary.requests + champion.requests) < 0.05:  # a share, not policy.canary_min_requests
        return False, ["too little traffic"]
    return _reference_canary_verdict(champion, canary, dataclasses.replace(policy, canary_min_requests=0))


def _silent_refusal(champion, canary, policy):
    promote, _ = _reference_canary_verdict(champion, canary, policy)
    return promote, []


def _checklist(champion, canary, policy):
    checks = {
        "enough traffic": canary.requests >= policy.canary_min_requests,
        "errors": canary.error_rate - champion.error_rate <= policy.max_error_rate_increase,
        "latency": bool(np.isfinite(canary.p99_ms)) and canary.p99_ms <= policy.max_p99_ms,
        "flag rate": bool(np.isfinite(canary.flag_rate))
        and abs(math.log(canary.flag_rate / champion.flag_rate)) <= math.log(policy.max_flag_rate_ratio),
    }
    failed = [name for name, ok in checks.items() if not ok]
    return not failed, [f"failed: {name}" for name in failed]


def _strict_latency(champion, canary, policy):
    promote, reasons = _reference_canary_verdict(champion, canary, policy)
    if promote and not canary.p99_ms < policy.max_p99_ms:  # `<`: a p99 exactly at the budget refused
        return False, [f"p99 {canary.p99_ms} ms not under {policy.max_p99_ms} ms"]
    return promote, reasons


def _more_than_minimum(champion, canary, policy):
    if canary.requests <= policy.canary_min_requests:  # `<=`: exactly the minimum refused
        return False, ["not enough requests"]
    return _reference_canary_verdict(champion, canary, policy)


def _products_not_ratios(champion, canary, policy):
    """Right: the same bounds without a division (no NaN or zero to worry about in a ratio)."""
    failed = []
    if canary.requests < policy.canary_min_requests:
        failed.append("too few requests")
    if not canary.error_rate - champion.error_rate <= policy.max_error_rate_increase:
        failed.append("error rate")
    if not canary.p99_ms <= policy.max_p99_ms:
        failed.append("p99")
    if not champion.flag_rate <= canary.flag_rate * policy.max_flag_rate_ratio:
        failed.append("flags too little")
    if not canary.flag_rate <= champion.flag_rate * policy.max_flag_rate_ratio:
        failed.append("flags too much")
    return not failed, failed


SOLUTION_8_1 = '''
def canary_verdict(champion, canary, policy):
    if canary.requests < policy.canary_min_requests:  # no evidence is not good evidence
        return False, [f"only {canary.requests} canary requests; {policy.canary_min_requests} needed"]
    ratio = canary.flag_rate / champion.flag_rate
    checks = {  # reason -> passed? (kept on a promotion too: the event log says why)
        f"error rate {canary.error_rate:.2%} vs champion {champion.error_rate:.2%}":
            canary.error_rate <= champion.error_rate + policy.max_error_rate_increase,  # rates, not counts
        f"p99 {canary.p99_ms:.0f} ms, budget {policy.max_p99_ms:.0f} ms":
            canary.p99_ms <= policy.max_p99_ms,  # NaN (not measured) compares False: refused
        f"flags {ratio:.2f} times as often as the champion":
            1 / policy.max_flag_rate_ratio <= ratio <= policy.max_flag_rate_ratio,  # both directions
    }
    return all(checks.values()), [f"{'ok' if ok else 'FAIL'}: {reason}" for reason, ok in checks.items()]
'''


@exercise(
    "8.1",
    "The canary verdict",
    solution=SOLUTION_8_1,
    hints=(
        "The canary answers a tenth of the traffic: compare error *rates*, never error counts.",
        "Every bound is a field of `policy` (canary_min_requests, max_error_rate_increase, max_p99_ms, "
        "max_flag_rate_ratio): a rule with 100 written in it breaks when someone tightens the policy.",
        "Too few requests is a reason not to promote. And NaN compares False with everything: "
        "`not p99 <= budget` refuses an unmeasured latency, `p99 > budget` lets it through.",
        "A flag rate far *below* the champion's is as suspicious as one far above it.",
    ),
    reference="canary_verdict",
    trials=lambda: canary_trials(),
    stub=lambda: _blank,
    cases=(
        wrong("error counts instead of rates", lambda: _counts_not_rates, "error *rates*"),
        wrong("the budget written into the rule", lambda: _hard_coded_budget, "read the bounds from"),
        wrong("no minimum of traffic", lambda: _no_minimum_traffic, "too few to judge"),
        wrong("flag rate bounded upward only", lambda: _upward_only, "both directions"),
        wrong("a difference instead of a factor", lambda: _difference_not_ratio, "a ratio, not a difference"),
        wrong("the budget stretched for a slow champion", lambda: _slow_champion_excuses, "whatever the champion"),
        wrong("a share of traffic for the minimum", lambda: _share_of_traffic, "as a count of requests"),
        wrong("never any worse on errors", lambda: _never_worse, "is noise"),
        wrong("NaN latency lets it through", lambda: _nan_lets_through, "every comparison with NaN"),
        wrong("refuses without saying why", lambda: _silent_refusal, "reasons"),
        wrong("`<` at the latency budget", lambda: _strict_latency, "a bound is inclusive"),
        wrong("`>` the minimum of requests", lambda: _more_than_minimum, "exactly `canary_min_requests`"),
        right("a checklist of named checks", lambda: _checklist),
        right("products instead of ratios, subtraction for errors", lambda: _products_not_ratios),
    ),
)
def _check_canary_verdict(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function canary_verdict(champion, canary, policy) returning (promote, reasons)"
    for name, champion, canary, policy, expected, why in canary_cases():
        try:
            got = call(func, champion, canary, policy)
        except (AssertionError, NotAttempted):
            raise
        except Exception as exc:  # noqa: BLE001 - a learner's function may raise anything
            raise AssertionError(f"on {name} your rule raised {type(exc).__name__}: {exc}. The loop calls it on "
                                 f"every canary; it must answer this one too: {why}.") from None
        assert isinstance(got, tuple | list) and len(got) == 2, (
            f"canary_verdict returned {got!r}; return a pair: (promote, reasons), e.g. (False, ['p99 140 ms'])")
        promote, reasons = got
        assert isinstance(promote, bool | np.bool_), (
            f"the first item of your answer is {promote!r}; it must be True (promote) or False (roll back)")
        assert isinstance(reasons, list | tuple) and all(isinstance(r, str) for r in reasons), (
            f"the second item of your answer is {reasons!r}; it must be a list of reasons (strings)")
        figures = (f"champion: {champion.requests} requests, {champion.error_rate:.1%} errors, p99 "
                   f"{champion.p99_ms} ms, flag rate {champion.flag_rate:.1%}; canary: {canary.requests} requests, "
                   f"{canary.error_rate:.1%} errors, p99 {canary.p99_ms} ms, flag rate {canary.flag_rate:.1%}")
        assert bool(promote) == expected, (
            f"on {name} ({figures}) your rule said {'promote' if promote else 'roll back'}, but it should "
            f"{'promote' if expected else 'roll back'}: {why}.")
        assert promote or reasons, (
            f"on {name} your rule rolled back without reasons: the loop writes them into the event log, and "
            "whoever is on call reads them. Return at least one reason, e.g. 'p99 140 ms over the 100 ms budget'.")
    differential(func, _solution("8.1"), canary_trials(), compare=_compare_verdict, what="your rule")


# ------------------------------------------------------------------ 8.2 what the shadow would have done

SHADOW_THRESHOLD = 0.30  # the candidate's own threshold in the planted log (the champion's is 0.20)


def shadow_log():
    """A planted prediction log: four payments before the shadow started, then eleven scored by the
    champion while the candidate shadowed (two of them with a candidate error)."""
    rows = [
        # before the shadow: the champion alone
        ("p1", 0.05, "approve", None, None, None),
        ("p2", 0.25, "flag", None, None, None),
        ("p3", 0.90, "flag", None, None, None),
        ("p4", 0.01, "approve", None, None, None),
        # shadow of v5: the champion (threshold 0.20) answers, the candidate (threshold 0.30) is logged
        ("s1", 0.02, "approve", "5", 0.01, None),
        ("s2", 0.25, "flag", "5", 0.28, None),  # candidate: 0.28 < 0.30, would approve (a disagreement)
        ("s3", 0.60, "flag", "5", 0.70, None),
        ("s4", 0.10, "approve", "5", 0.30, None),  # exactly at its threshold: would flag (a disagreement)
        ("s5", 0.15, "approve", "5", 0.35, None),  # would flag (a disagreement)
        ("s6", 0.50, "flag", "5", None, "ValueError: could not convert 'ONLINE'"),
        ("s7", 0.03, "approve", "5", 0.02, None),
        ("s8", 0.01, "approve", "5", None, "TimeoutError: candidate took over 50 ms"),
        ("s9", 0.40, "flag", "5", 0.45, None),
        ("s10", 0.22, "flag", "5", 0.05, None),  # would approve (a disagreement)
        ("s11", 0.21, "flag", "5", 0.26, None),  # would approve (a disagreement)
    ]
    frame = pd.DataFrame(rows, columns=["transaction_id", "score", "decision", "shadow_version", "shadow_score",
                                        "candidate_error"])
    frame["model_version"] = "4"
    frame["role"] = "champion"
    frame["shadow_score"] = frame["shadow_score"].astype(float)
    return frame


def _reference_shadow_disagreement(log, candidate_threshold):
    shadowed = log[log["shadow_score"].notna()]
    would_flag = shadowed["shadow_score"] >= candidate_threshold
    return float((would_flag != (shadowed["decision"] == "flag")).mean())


@exercise(
    "8.2",
    "What the shadow would have decided",
    solution='''
def shadow_disagreement(log, candidate_threshold):
    shadowed = log[log["shadow_score"].notna()]  # scored by both: not before the shadow, not a candidate error
    would_flag = shadowed["shadow_score"] >= candidate_threshold  # the candidate's own threshold; >= flags
    return float((would_flag != (shadowed["decision"] == "flag")).mean())
''',
    hints=(
        "Only rows with a `shadow_score` were scored by both models: rows from before the shadow started, "
        "and rows where the candidate raised (`candidate_error`), have none.",
        "The champion's decision is already in the log (`decision`), made with the champion's own threshold. "
        "The candidate decides with *its* threshold: `shadow_score >= candidate_threshold` means flag.",
        "Disagreement = share of the compared rows where the two decisions differ.",
    ),
    reference="shadow_disagreement",
    trials=lambda: shadow_trials(),
    stub=lambda: _blank,
    cases=(
        wrong("one threshold for both models", lambda: lambda log, t: float(
            ((log["score"] >= t) != (log["shadow_score"] >= t))[log["shadow_score"].notna()].mean()),
            "its own threshold"),
        wrong("strictly above the threshold", lambda: lambda log, t: float(
            ((log["shadow_score"] > t) != (log["decision"] == "flag"))[log["shadow_score"].notna()].mean()),
            "exactly at"),
        wrong("candidate errors counted as approvals", lambda: lambda log, t: float(
            ((log["shadow_score"].fillna(0) >= t) != (log["decision"] == "flag"))[log["shadow_version"].notna()]
            .mean()), "candidate_error"),
        wrong("divided by the whole log", lambda: lambda log, t: float(
            ((log["shadow_score"] >= t) != (log["decision"] == "flag"))[log["shadow_score"].notna()].sum()
            / len(log)), "before the shadow started"),
        wrong("agreement instead of disagreement", lambda: lambda log, t: 1 - _reference_shadow_disagreement(log, t),
              "agree"),
        wrong("a percentage", lambda: lambda log, t: 100 * _reference_shadow_disagreement(log, t), "percentage"),
        wrong("one direction only", lambda: lambda log, t: float(
            ((log["shadow_score"] < t) & (log["decision"] == "flag"))[log["shadow_score"].notna()].mean()),
            "both ways"),
        wrong("a column added to the caller's log", lambda: lambda log, t: log.assign(x=0).pipe(lambda f: None)
              or log.__setitem__("would_flag", log["shadow_score"] >= t) or _reference_shadow_disagreement(log, t),
              "work on a copy"),
        wrong("the story's threshold written in", lambda: lambda log, t: _reference_shadow_disagreement(log, 0.30),
              "`candidate_threshold=0.35`"),
        right("dropna on both sides", lambda: lambda log, t: float(
            ((log["shadow_score"].dropna() >= t) != (log.loc[log["shadow_score"].notna(), "decision"] == "flag"))
            .mean())),
        right("numpy on the compared rows", lambda: lambda log, t: float(np.mean(
            [(s >= t) != (d == "flag") for s, d in zip(log["shadow_score"], log["decision"], strict=True)
             if not np.isnan(s)]))),
        right("a query", lambda: lambda log, t: log.query("shadow_score == shadow_score").pipe(
            lambda f: float(((f["shadow_score"] >= t).map({True: "flag", False: "approve"}) != f["decision"]).mean()))),
    ),
)
def _check_shadow_disagreement(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function shadow_disagreement(log, candidate_threshold) returning a share"
    log = shadow_log()
    before = log.copy()
    got = call(func, log, SHADOW_THRESHOLD)
    try:
        pd.testing.assert_frame_equal(log, before)
    except AssertionError:
        raise AssertionError("your function changed the log it was given (a column added or values overwritten). "
                             "The log belongs to the caller, who reads it again: work on a copy "
                             "(`log = log.copy()`) or compute without assigning into it.") from None
    assert isinstance(got, int | float | np.floating) and not isinstance(got, bool), (
        f"shadow_disagreement returned {type(got).__name__}; return the share as a number between 0 and 1")
    expected = _reference_shadow_disagreement(log, SHADOW_THRESHOLD)  # 5 of the 9 rows both models scored
    shadowed = log[log["shadow_score"].notna()]
    disagree = (shadowed["shadow_score"] >= SHADOW_THRESHOLD) != (shadowed["decision"] == "flag")
    would_flag, flagged = shadowed["shadow_score"] >= SHADOW_THRESHOLD, shadowed["decision"] == "flag"
    if math.isclose(got, 100 * expected):
        raise AssertionError(f"you returned {got:.1f}: a percentage. Return the share as a number between 0 and 1 "
                             f"({expected:.3f}); format it as a percentage when you print it ({{share:.1%}}).")
    if math.isclose(got, disagree.sum()):
        raise AssertionError(f"you returned {got}: the number of disagreements. Return the share: divide by the "
                             "number of payments both models scored.")
    mistakes = [  # (the share a known mistake gives, what to say)
        (1 - expected, "that is the share of payments on which the two models *agree*; disagreement is the share "
                       "where the decisions differ (`!=`)"),
        (float((would_flag & ~flagged).mean()),
         "that counts only the payments the candidate would flag and the champion approved. A disagreement "
         "goes both ways: also count those the champion flagged and the candidate would approve"),
        (float((~would_flag & flagged).mean()),
         "that counts only the payments the champion flagged and the candidate would approve. A disagreement "
         "goes both ways: also count those the candidate would flag and the champion approved"),
        (float(((log["shadow_score"] >= SHADOW_THRESHOLD) != (log["decision"] == "flag"))[
            log["candidate_error"].isna()].mean()),
         "you left out the candidate's errors, but kept the 4 payments from before the shadow started: the "
         "candidate never saw those (no shadow_score). Keep only the rows with a shadow_score"),
        (float(((shadowed["score"] >= SHADOW_THRESHOLD) != (shadowed["shadow_score"] >= SHADOW_THRESHOLD)).mean()),
         "that is what you get by holding both scores to the candidate's threshold. The champion decided "
         "each payment with its own threshold (0.20 here), and the log records that as `decision`: compare "
         "the candidate's decision (its own threshold) with `decision`"),
        (float(((shadowed["shadow_score"] > SHADOW_THRESHOLD) != (shadowed["decision"] == "flag")).mean()),
         "payment s4 scored exactly at the candidate's threshold (0.30), and a score exactly at the threshold "
         "is flagged (`score >= threshold`, as the server decides)"),
        (float(((log["shadow_score"].fillna(0) >= SHADOW_THRESHOLD) != (log["decision"] == "flag"))[
            log["shadow_version"].notna()].mean()),
         "2 of the 11 shadowed payments have no shadow_score because the candidate raised (see "
         "`candidate_error`): nobody knows what it would have decided there. Leave them out (they are "
         "candidate errors, which the canary verdict counts)"),
        (float(disagree.sum() / len(log)),
         "you divided by the whole log, including the 4 payments from before the shadow started and the 2 "
         "the candidate failed on. Divide by the rows both models scored"),
    ]
    matching = [why for share, why in mistakes if math.isclose(got, share) and not math.isclose(got, expected)]
    if len(matching) == 1:
        raise AssertionError(f"you returned {got:.3f}: {matching[0]}.")
    if matching:  # two mistakes give this share: name both
        raise AssertionError(f"you returned {got:.3f}, which two different mistakes give: "
                             + " Or: ".join(f"{why[0].upper()}{why[1:]}." for why in matching))
    assert math.isclose(got, expected), (
        f"you returned {got:.3f}, expected {expected:.3f} (5 of the 9 payments both models scored). The champion "
        "decided each payment with its own threshold (recorded as `decision`); the candidate decides with "
        f"its own threshold ({SHADOW_THRESHOLD}): `shadow_score >= candidate_threshold` means flag.")
    differential(func, _solution("8.2"), shadow_trials(), compare=_compare_share)


# ------------------------------------------------------------------ 8.3 the rollback drill


def _version_info(version, mode="off", share=0.0, candidate=None, contract_hash=None):
    from .. import data

    return {"name": "cardguard", "version": version, "alias": "champion", "source": "registry",
            "threshold": 0.21, "contract_version": data.CONTRACT_VERSION,
            "contract_hash": contract_hash or data.contract_hash(), "data_fingerprint": "3f2a9c1d7e5b4a60",
            "rollout": {"mode": mode, "share": share, "candidate_version": candidate}}


def drill_cases():
    """(name, /version answer, the version rolled back to, done?, why)."""
    return [
        ("a finished rollback", _version_info("3"), "3", True, "version 3 serves alone"),
        ("a server that has not reloaded yet", _version_info("4"), "3", False,
         "the server still answers with version 4: the registry alias moved, but the server picks it up "
         "only at its next poll or /admin/reload. Compare the served `version` with the one you rolled back to"),
        ("a rollback during a canary", _version_info("3", "canary", 0.1, "4"), "3", False,
         "version 3 is the champion, but the rollout is still in canary mode: version 4 answers 10% of "
         "payments. The drill is done only when `rollout.mode` is 'off'"),
        ("a rollback during a shadow", _version_info("3", "shadow", 0.0, "4"), "3", False,
         "version 4 still scores every payment in shadow mode (it costs latency and can fail): the "
         "drill is done only when `rollout.mode` is 'off'"),
        ("a rollback across a contract change", _version_info("3", contract_hash="c0ffee00c0ffee00"), "3", False,
         "version 3 was trained on another data contract (contract_hash c0ffee00c0ffee00, today's is "
         "lab.data.contract_hash()): its features mean something else. Compare `contract_hash` too"),
        ("a server with no model loaded", {"detail": "model not loaded"}, "3", False,
         "/version answered 503 with only a `detail`: no model serves at all. Your function must say "
         "False here, not raise: this is the moment the drill most needs an answer (use .get)"),
    ]


def _reference_rollback_done(info, expected_version):
    from .. import data

    rollout = info.get("rollout") or {}
    return (info.get("version") == str(expected_version) and rollout.get("mode") == "off"
            and info.get("contract_hash") == data.contract_hash())


def _version_only(info, expected_version):
    return info.get("version") == str(expected_version)


def _no_contract(info, expected_version):
    return info.get("version") == str(expected_version) and (info.get("rollout") or {}).get("mode") == "off"


def _crashes_when_not_ready(info, expected_version):
    from .. import data

    return (info["version"] == str(expected_version) and info["rollout"]["mode"] == "off"
            and info["contract_hash"] == data.contract_hash())


def _canary_only(info, expected_version):
    from .. import data

    return (info.get("version") == str(expected_version) and (info.get("rollout") or {}).get("mode") != "canary"
            and info.get("contract_hash") == data.contract_hash())


@exercise(
    "8.3",
    "Verify the rollback drill",
    solution='''
def rollback_done(info, expected_version):
    rollout = info.get("rollout") or {}  # a 503 answer has only a "detail"
    return (info.get("version") == str(expected_version)  # the server reloaded
            and rollout.get("mode") == "off"  # no candidate answers or scores any payment
            and info.get("contract_hash") == lab.data.contract_hash())  # it speaks today's contract
''',
    hints=(
        "Three things must hold: the server serves the version you rolled back to, no candidate is in "
        "the rollout (`info['rollout']['mode'] == 'off'`), and that version speaks today's data contract.",
        "The registry alias moves at once; the server follows at its next poll or /admin/reload. The "
        "drill waits for /version, it does not assume.",
        "A server with no model answers 503 with `{'detail': ...}`: use `info.get(...)` so the check says "
        "False instead of raising.",
    ),
    reference="rollback_done",
    trials=lambda: drill_trials(),
    stub=lambda: _blank,
    cases=(
        wrong("the version alone", lambda: _version_only, "rollout is still in canary mode"),
        wrong("canary, but not shadow", lambda: _canary_only, "shadow mode"),
        wrong("ignores the data contract", lambda: _no_contract, "contract_hash"),
        wrong("no `rollout` key taken as off", lambda: lambda info, v: bool(
            str(info.get("version")) == str(v) and info.get("rollout", {"mode": "off"}).get("mode") == "off"
            and info.get("contract_hash") == __import__("mlops_lab").data.contract_hash()),
              "without `rollout` does not confirm a rollback"),
        wrong("indexing that raises on a 503", lambda: _crashes_when_not_ready, "not raise"),
        wrong("an `and` chain that hands back None", lambda: lambda info, v: info.get("rollout") and (
            info.get("version") == str(v) and info["rollout"]["mode"] == "off"
            and info.get("contract_hash") == __import__("mlops_lab").data.contract_hash()), "bool(...)"),
        wrong("a version found inside another", lambda: lambda info, v: bool(
            str(v) in str(info.get("version")) and (info.get("rollout") or {}).get("mode") == "off"
            and info.get("contract_hash") == __import__("mlops_lab").data.contract_hash()), "\"13\" is not \"3\""),
        wrong("the version compared without str()", lambda: lambda info, v: bool(
            info.get("version") == v and (info.get("rollout") or {}).get("mode") == "off"
            and info.get("contract_hash") == __import__("mlops_lab").data.contract_hash()), "given as an int"),
        right("versions compared as numbers", lambda: lambda info, v: bool(
            info.get("version") and int(info["version"]) == int(v) and (info.get("rollout") or {}).get("mode") == "off"
            and info.get("contract_hash") == __import__("mlops_lab").data.contract_hash())),
        right("all() of named conditions", lambda: lambda info, v: all([
            str(info.get("version")) == str(v),
            info.get("rollout", {}).get("mode") == "off",
            info.get("rollout", {}).get("candidate_version") is None,
            info.get("contract_hash") == __import__("mlops_lab").data.contract_hash()])),
    ),
)
def _check_rollback_done(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function rollback_done(info, expected_version) returning True or False"
    for name, info, expected_version, expected, why in drill_cases():
        try:
            got = func(dict(info), expected_version)
        except Exception as exc:  # noqa: BLE001 - a learner's function may raise anything
            raise AssertionError(f"on {name} your function raised {type(exc).__name__}: {exc}. {why}.") from None
        if got is None:
            require_attempt(func)
            raise AssertionError(
                f"on {name} your function returned None. If it returns an `and` chain, the chain hands back its "
                "first falsy part as it is: here `info.get(...)` is None. Wrap the chain in `bool(...)`. "
                "Otherwise, did you forget `return`?")
        assert isinstance(got, bool | np.bool_), f"rollback_done returned {got!r}; return True or False"
        assert bool(got) == expected, f"on {name} (/version: {info}) you said {bool(got)}: {why}."
    differential(func, _solution("8.3"), drill_trials(), compare=_compare_drill)


# ------------------------------------------------------------------ 8.4 the facts of a postmortem

LOOP_START = pd.Timestamp("2026-02-16")  # pipeline.START: the loop's week 1 begins here
DRIFT_START = LOOP_START + pd.Timedelta(weeks=3)  # card testing from week 4 on, as in the lab's run


def _events(rows):
    """An event log as ``pipeline.events()`` returns it, from (week, day, kind, version, ok, reason) rows."""
    frame = pd.DataFrame([{"seq": seq, "week": week, "day": day,
                           "at": LOOP_START + pd.Timedelta(days=7 * (week - 1) + day), "kind": kind,
                           "version": version, "ok": ok, "reasons": [reason]}
                          for seq, (week, day, kind, version, ok, reason) in enumerate(rows, 1)])
    return frame


def _rollout(week, version, promoted, why):
    """A gate that passed at the end of ``week``, then shadow, canary and its verdict the week after."""
    return [(week, 7, "gate", version, True, f"challenger v{version}: passed"),
            (week + 1, 0, "shadow", version, None, f"v{version} scores every payment beside the champion"),
            (week + 1, 1, "shadow verdict", version, True, "flag rate within bounds"),
            (week + 1, 1, "canary", version, None, f"v{version} answers 20% of payments"),
            (week + 1, 3, "canary verdict", version, promoted, why),
            (week + 1, 3, "promotion" if promoted else "rollback", version, promoted, why)]


def postmortem_cases():
    """(name, events, drift start, expected facts): the lab's story, with the traps a real log holds."""
    before = [  # a false alarm and a promotion in week 1-2, a rolled-back canary in week 3: before the drift
        (1, 7, "alert", None, None, "chargebacks up FIRED: chargebacks_per_1000 = 1.7 > 1.6"),
        (1, 7, "retrain", None, None, "alert: chargebacks up"), (1, 7, "register", "3", None, "challenger v3"),
        *_rollout(1, "3", True, "error rate 0.00%, p99 9.1 ms, flag rate within bounds"),
        (2, 7, "retrain", None, None, "schedule: every 1 week(s)"), (2, 7, "register", "4", None, "challenger v4"),
        *_rollout(2, "4", False, "p99 140.2 ms > 100 ms"),
    ]
    incident = [
        (4, 7, "alert", None, None, "inputs drift FIRED: drifted_columns = 4 > 0"),
        (4, 7, "retrain", None, None, "alert: inputs drift"), (4, 7, "register", "5", None, "challenger v5"),
        *_rollout(4, "5", False, "error rate 4.10% > 0.50%"),
        (5, 7, "alert", None, None, "inputs drift FIRED: drifted_columns = 4 > 0"),
        (5, 7, "retrain", None, None, "alert: inputs drift"), (5, 7, "register", "6", None, "challenger v6"),
        *_rollout(5, "6", True, "error rate 0.00%, p99 8.7 ms, flag rate 3.1% within [1.2%, 4.8%]"),
        (6, 7, "retrain", None, None, "schedule: every 1 week(s)"), (6, 7, "register", "7", None, "challenger v7"),
        *_rollout(6, "7", False, "flag rate 7.9% outside [1.5%, 6.2%]"),
        (7, 7, "retrain", None, None, "schedule: every 1 week(s)"), (7, 7, "register", "8", None, "challenger v8"),
        *_rollout(7, "8", True, "error rate 0.00%, p99 8.2 ms, flag rate 3.0% within [1.2%, 4.8%]"),
    ]
    at = lambda week, day: LOOP_START + pd.Timedelta(days=7 * (week - 1) + day)  # noqa: E731
    open_ = [row for row in before + incident if (row[0], row[1]) < (6, 3)]
    late = [row for row in before + incident if not (row[0] == 4 and row[2] == "alert")]
    chargebacks_first = [(4, 7, "alert", None, None, "chargebacks up FIRED: chargebacks_per_1000 = 3.4 > 1.6")
                         if (row[0], row[2]) == (4, "alert") else row for row in before + incident]
    return [
        ("the card-testing incident", _events(before + incident), DRIFT_START,
         {"detected_at": at(4, 7), "fixed_by": "6", "fixed_at": at(6, 3), "rolled_back": ["5"]}),
        ("an incident still open", _events(open_), DRIFT_START,
         {"detected_at": at(4, 7), "fixed_by": None, "fixed_at": None, "rolled_back": ["5"]}),
        ("an alert a week late", _events(late), DRIFT_START,
         {"detected_at": at(5, 7), "fixed_by": "6", "fixed_at": at(6, 3), "rolled_back": ["5"]}),
        ("a drift seen first in the chargebacks", _events(chargebacks_first), DRIFT_START,
         {"detected_at": at(4, 7), "fixed_by": "6", "fixed_at": at(6, 3), "rolled_back": ["5"]}),
    ]


def _missing(value) -> bool:
    """None, NaT or NaN: what pandas hands back for 'no such row'."""
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or another container: not missing
        return False


def _last_promotion(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    after = events[(events["at"] >= drift_start) & (events["kind"] == "promotion")]
    return {**facts, "fixed_by": after["version"].iloc[-1], "fixed_at": after["at"].iloc[-1]} if len(after) else facts


def _inputs_drift_alerts_only(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    after = events[(events["at"] >= drift_start) & (events["kind"] == "alert")]
    drift = after[after["reasons"].map(lambda reasons: any("inputs drift" in r for r in reasons))]
    return {**facts, "detected_at": drift["at"].iloc[0] if len(drift) else None}


def _with_min(events, drift_start):
    after = events[events["at"] >= drift_start]
    fix_at = after.loc[after["kind"] == "promotion", "at"].min()  # NaT while the incident is open
    fixed = after[(after["kind"] == "promotion") & (after["at"] == fix_at)]
    rolled = after[(after["kind"] == "rollback") & ((after["at"] <= fix_at) if pd.notna(fix_at) else True)]
    rolled = rolled.sort_values("at")  # in order
    return {"detected_at": after.loc[after["kind"] == "alert", "at"].min(), "fixed_at": fix_at,
            "fixed_by": int(fixed["version"].iloc[0]) if len(fixed) else None,
            "rolled_back": [int(v) for v in rolled["version"]]}


def _reference_incident_facts(events, drift_start):
    after = events[events["at"] >= pd.Timestamp(drift_start)].sort_values("at", kind="stable")
    alerts = after[after["kind"] == "alert"]
    detected = alerts["at"].iloc[0] if len(alerts) else None
    fix = after[after["kind"] == "promotion"]
    rolled_back = after.loc[after["kind"] == "rollback", "version"]
    if len(fix):
        rolled_back = rolled_back[after.loc[rolled_back.index, "at"] <= fix["at"].iloc[0]]
    return {"detected_at": detected, "fixed_by": fix["version"].iloc[0] if len(fix) else None,
            "fixed_at": fix["at"].iloc[0] if len(fix) else None, "rolled_back": list(rolled_back)}


def _facts(events, drift_start, after):
    alerts, fix = after[after["kind"] == "alert"], after[after["kind"] == "promotion"]
    rolled = after[after["kind"] == "rollback"]
    if len(fix):
        rolled = rolled[rolled["at"] <= fix["at"].iloc[0]]
    return {"detected_at": alerts["at"].iloc[0] if len(alerts) else None,
            "fixed_by": fix["version"].iloc[0] if len(fix) else None,
            "fixed_at": fix["at"].iloc[0] if len(fix) else None, "rolled_back": list(rolled["version"])}


def _strictly_after(events, drift_start):
    return _facts(events, drift_start, events[events["at"] > drift_start].sort_values("at", kind="stable"))


def _taken_as_sorted(events, drift_start):
    return _facts(events, drift_start, events[events["at"] >= drift_start])


def _sorted_by_week(events, drift_start):
    return _facts(events, drift_start, events[events["at"] >= drift_start].sort_values("week", kind="stable"))


def _rolled_back_as(kind):
    def incident_facts(events, drift_start):
        facts = _reference_incident_facts(events, drift_start)
        return {**facts, "rolled_back": kind(facts["rolled_back"])}

    return incident_facts


def _fixed_on_the_day(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    return {**facts, "fixed_at": None if facts["fixed_at"] is None else facts["fixed_at"].normalize()}


def _first_alert_in_log(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    return {**facts, "detected_at": events.loc[events["kind"] == "alert", "at"].iloc[0]}


def _first_promotion_in_log(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    promotions = events[events["kind"] == "promotion"]
    return {**facts, "fixed_by": promotions["version"].iloc[0], "fixed_at": promotions["at"].iloc[0]}


def _canary_is_the_fix(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    after = events[(events["at"] >= drift_start) & (events["kind"] == "canary")]
    return {**facts, "fixed_by": after["version"].iloc[0], "fixed_at": after["at"].iloc[0]}


def _every_rollback(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    return {**facts, "rolled_back": list(events.loc[events["kind"] == "rollback", "version"])}


def _rollbacks_after_drift(events, drift_start):
    facts = _reference_incident_facts(events, drift_start)
    after = events[events["at"] >= drift_start]
    return {**facts, "rolled_back": list(after.loc[after["kind"] == "rollback", "version"])}


def _crashes_while_open(events, drift_start):
    after = events[events["at"] >= drift_start]
    fix = after[after["kind"] == "promotion"].iloc[0]
    rollbacks = after[(after["kind"] == "rollback") & (after["at"] <= fix["at"])]
    return {"detected_at": after.loc[after["kind"] == "alert", "at"].iloc[0], "fixed_by": fix["version"],
            "fixed_at": fix["at"], "rolled_back": list(rollbacks["version"])}


def _facts_by_loop(events, drift_start):
    detected = fixed_by = fixed_at = None
    rolled_back = []
    for row in events.sort_values("at").itertuples():
        if row.at < drift_start or fixed_by is not None:
            continue
        if row.kind == "alert" and detected is None:
            detected = row.at
        elif row.kind == "rollback":
            rolled_back.append(row.version)
        elif row.kind == "promotion":
            fixed_by, fixed_at = row.version, row.at
    return {"detected_at": detected, "fixed_by": fixed_by, "fixed_at": fixed_at, "rolled_back": rolled_back}


@exercise(
    "8.4",
    "The facts of the postmortem",
    solution='''
def incident_facts(events, drift_start):
    after = events[events["at"] >= pd.Timestamp(drift_start)].sort_values("at", kind="stable")
    alerts = after[after["kind"] == "alert"]
    fix = after[after["kind"] == "promotion"]  # the first promotion after the drift began
    rolled_back = after[after["kind"] == "rollback"]
    if len(fix):  # rollbacks on the way to the fix, not later ones
        rolled_back = rolled_back[rolled_back["at"] <= fix["at"].iloc[0]]
    return {"detected_at": alerts["at"].iloc[0] if len(alerts) else None,
            "fixed_by": fix["version"].iloc[0] if len(fix) else None,
            "fixed_at": fix["at"].iloc[0] if len(fix) else None,
            "rolled_back": list(rolled_back["version"])}
''',
    hints=(
        "Only events at or after `drift_start` belong to the incident: an alert before it was a false "
        "alarm, a promotion before it fixed nothing.",
        "The fix is the first *promotion* after the drift began. A canary is not a fix: it answers "
        "only a share of the traffic, and it may still be rolled back.",
        "An incident can still be open: then there is no promotion, and `fixed_by`/`fixed_at` are None "
        "(`.iloc[0]` on an empty frame raises).",
    ),
    reference="incident_facts",
    trials=lambda: incident_trials(),
    stub=lambda: _blank,
    cases=(
        wrong("the first alert in the log", lambda: _first_alert_in_log, "false alarm"),
        wrong("the first promotion in the log", lambda: _first_promotion_in_log, "before the drift began"),
        wrong("the canary taken for the fix", lambda: _canary_is_the_fix, "a canary is not a fix"),
        wrong("every rollback in the log", lambda: _every_rollback, "before the drift began"),
        wrong("every rollback after the drift start", lambda: _rollbacks_after_drift, "after the fix"),
        wrong("crashes while the incident is open", lambda: _crashes_while_open, "still open"),
        wrong("the last promotion", lambda: _last_promotion, "*first* promotion"),
        wrong("inputs-drift alerts only", lambda: _inputs_drift_alerts_only, "whichever rule"),
        wrong("alerts strictly after the drift start", lambda: _strictly_after, "exactly at drift_start counts"),
        wrong("the log taken as sorted", lambda: _taken_as_sorted, "need not be in time order"),
        wrong("sorted by week, not by at", lambda: _sorted_by_week, "in another order"),
        wrong("rolled_back reversed", lambda: _rolled_back_as(lambda versions: versions[::-1]), "in another order"),
        wrong("rolled_back as a set", lambda: _rolled_back_as(set), "a set has no order"),
        wrong("rolled_back as a tuple", lambda: _rolled_back_as(tuple), "return a list"),
        wrong("fixed_at cut to its date", lambda: _fixed_on_the_day, "the earliest promotion"),
        right(".min() with NaT, and integer versions", lambda: _with_min),
        right("one pass over the sorted log", lambda: _facts_by_loop),
    ),
)
def _check_incident_facts(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function incident_facts(events, drift_start) returning a dict"
    for name, events, drift_start, expected in postmortem_cases():
        try:
            got = func(events.copy(), drift_start)
        except Exception as exc:  # noqa: BLE001 - a learner's function may raise anything
            open_ = expected["fixed_by"] is None
            raise AssertionError(
                f"on {name} your function raised {type(exc).__name__}: {exc}."
                + (" This incident is still open (no promotion after the drift began): return None for "
                   "fixed_by and fixed_at." if open_ else "")) from None
        if got is None:
            call(func, events.copy(), drift_start)
        assert isinstance(got, dict), f"incident_facts returned {type(got).__name__}; return a dict"
        missing = set(expected) - set(got)
        assert not missing, f"your dict lacks {sorted(missing)}; return the keys {list(expected)}"
        got = {k: None if _missing(v) else v for k, v in got.items()}  # NaT/NaN (e.g. .min() of nothing) = None
        detected = None if got["detected_at"] is None else pd.Timestamp(got["detected_at"])
        if detected is not None and detected < drift_start:
            raise AssertionError(
                f"on {name} you say the drift was detected on {detected:%Y-%m-%d}, before it began "
                f"({drift_start:%Y-%m-%d}): that alert was a false alarm. Detection is the first alert at or "
                "after the drift start.")
        assert detected == expected["detected_at"], (
            f"on {name} you say detected_at {detected}, expected {expected['detected_at']:%Y-%m-%d}: the first "
            "alert at or after the drift start, whichever rule raised it (inputs drift or chargebacks up)")
        versions = events.set_index("version")
        if got["fixed_by"] is not None and str(got["fixed_by"]) in versions.index:
            kinds = set(events.loc[events["version"] == str(got["fixed_by"]), "kind"])
            fixed_at = events.loc[(events["version"] == str(got["fixed_by"])) & (events["kind"] == "promotion"), "at"]
            assert not (len(fixed_at) and fixed_at.iloc[0] < drift_start), (
                f"on {name} you say version {got['fixed_by']} fixed it, but it was promoted before the drift "
                "began: it never saw a card-testing payment. The fix is the first promotion after the drift start.")
            assert "promotion" in kinds or got["fixed_by"] == expected["fixed_by"], (
                f"on {name} you say version {got['fixed_by']} fixed it, but it never got past the canary: "
                "a canary is not a fix (it answers a share of traffic and can be rolled back). The fix is "
                "the first promotion after the drift start.")
        fixed_by = None if got["fixed_by"] is None else str(got["fixed_by"])  # 6 or "6": the same version
        assert fixed_by == expected["fixed_by"], (
            f"on {name} you say fixed_by {got['fixed_by']!r}, expected {expected['fixed_by']!r}"
            + (": the incident is still open, nothing was promoted after the drift began" if expected["fixed_by"]
               is None else ": the *first* promotion after the drift began (later ones fixed other things)"))
        fixed_at = None if got["fixed_at"] is None else pd.Timestamp(got["fixed_at"])
        assert fixed_at == expected["fixed_at"], (
            f"on {name} you say fixed_at {fixed_at}, expected {expected['fixed_at']}: the time of that promotion")
        assert isinstance(got["rolled_back"], list), (
            f"on {name} rolled_back is {type(got['rolled_back']).__name__} {got['rolled_back']!r}; return a list "
            "of versions in the order they were rolled back (a set has no order)")
        rolled_back = [str(v) for v in got["rolled_back"]]
        assert rolled_back == expected["rolled_back"], (
            f"on {name} you list rolled_back {rolled_back}, expected {expected['rolled_back']}: only the "
            "rollbacks on the way to the fix belong to this incident, not those before the drift began (another "
            "story) nor those after the fix (the next one)")
    differential(func, _solution("8.4"), incident_trials(), compare=_compare_facts)


# ------------------------------------------------------------------ generated inputs (differential checks)
# Each check first runs the story's planted cases (their messages tell the story), then the learner's
# function beside the solution on generated inputs: other figures and policies, bounds hit exactly,
# shuffled rows, extra columns. Values at a bound are binary fractions (1/1024, 0.015625, 100.0), so that
# `a <= b + c` and `a - b <= c` agree and only `<` against `<=` tells them apart.


def _solution(id: str):
    from . import get

    return get(id).reference()


def _verdict_trial(label, champion, canary, policy, size):
    return Trial(label, (champion, canary, policy), size=size)


@functools.cache
def canary_trials() -> tuple:
    """Canary figures and policies around every bound of the verdict (>= 20)."""
    nan = float("nan")
    base = check_policy(canary_min_requests=512, max_error_rate_increase=2 ** -7, max_p99_ms=100.0,
                        max_flag_rate_ratio=2.0)
    champ = _figures("7", 8192, 64, 20.0, 0.015625)  # 0.78125% errors, 1.5625% flagged
    out = []

    def add(what, canary, policy=base, champion=champ):
        label = (f"{what} (champion: {champion.requests:,} requests, {champion.error_rate:.4%} errors, flag rate "
                 f"{champion.flag_rate:.4%}; canary: {canary.requests:,} requests, {canary.error_rate:.4%} errors, "
                 f"p99 {canary.p99_ms} ms, flag rate {canary.flag_rate:.4%}; policy: canary_min_requests="
                 f"{policy.canary_min_requests}, max_error_rate_increase={policy.max_error_rate_increase}, "
                 f"max_p99_ms={policy.max_p99_ms}, max_flag_rate_ratio={policy.max_flag_rate_ratio})")
        out.append(_verdict_trial(label, champion, canary, policy, size=len(out)))

    add("a canary with exactly `canary_min_requests` requests", _figures("8", 512, 4, 30.0, 0.015625))
    add("a canary one request short of `canary_min_requests`", _figures("8", 511, 3, 30.0, 0.015625))
    add("a canary whose error rate is exactly the champion's plus `max_error_rate_increase`",
        _figures("8", 1024, 16, 30.0, 0.015625))
    add("a canary one error over the champion's error rate plus `max_error_rate_increase`",
        _figures("8", 1024, 17, 30.0, 0.015625))
    add("a canary whose p99 is exactly `max_p99_ms`", _figures("8", 1024, 8, 100.0, 0.015625))
    add("a canary whose p99 is half a millisecond over `max_p99_ms`", _figures("8", 1024, 8, 100.5, 0.015625))
    add("a canary that flags exactly `max_flag_rate_ratio` times as often", _figures("8", 1024, 8, 30.0, 0.03125))
    add("a canary that flags exactly 1 / `max_flag_rate_ratio` as often", _figures("8", 1024, 8, 30.0, 0.0078125))
    add("a canary that flags a little over `max_flag_rate_ratio` times as often",
        _figures("8", 1024, 8, 30.0, 0.03125 + 2 ** -12))
    add("a canary that flags a little under 1 / `max_flag_rate_ratio` as often",
        _figures("8", 1024, 8, 30.0, 0.0078125 - 2 ** -12))
    add("a canary whose p99 was not measured (NaN)", _figures("8", 1024, 8, nan, 0.015625))
    add("a canary that answered nothing", _figures("8", 0, 0, nan, nan))
    add("a canary with fewer errors than the champion", _figures("8", 2048, 2, 12.0, 0.01953125))
    tight = dataclasses.replace(base, max_p99_ms=40.0)
    add("`max_p99_ms=40.0` and a canary p99 of 64.0 ms", _figures("8", 1024, 8, 64.0, 0.015625), tight)
    add("`max_p99_ms=40.0` and a canary p99 of exactly 40.0 ms", _figures("8", 1024, 8, 40.0, 0.015625), tight)
    loose = dataclasses.replace(base, max_p99_ms=250.0)
    add("`max_p99_ms=250.0` and a canary p99 of 180.0 ms", _figures("8", 1024, 8, 180.0, 0.015625), loose)
    strict = dataclasses.replace(base, max_error_rate_increase=0.0)
    add("`max_error_rate_increase=0.0` and a canary with exactly the champion's error rate",
        _figures("8", 1024, 8, 30.0, 0.015625), strict)
    add("`max_error_rate_increase=0.0` and a canary one error worse", _figures("8", 1024, 9, 30.0, 0.015625), strict)
    generous = dataclasses.replace(base, max_error_rate_increase=2 ** -5)
    add("`max_error_rate_increase=0.03125` and a canary with 3.5% errors", _figures("8", 1024, 36, 30.0, 0.015625),
        generous)
    wide = dataclasses.replace(base, max_flag_rate_ratio=4.0)
    add("`max_flag_rate_ratio=4.0` and a canary that flags 3 times as often",
        _figures("8", 1024, 8, 30.0, 0.046875), wide)
    narrow = dataclasses.replace(base, max_flag_rate_ratio=1.25)
    add("`max_flag_rate_ratio=1.25` and a canary that flags 1.5 times as often",
        _figures("8", 1024, 8, 30.0, 0.0234375), narrow)
    add("`max_flag_rate_ratio=1.25` and a canary that flags exactly 1.25 times as often",
        _figures("8", 1024, 8, 30.0, 0.01953125), narrow)
    more = dataclasses.replace(base, canary_min_requests=4096)
    add("`canary_min_requests=4096` and a healthy canary of 2,048 requests", _figures("8", 2048, 16, 30.0, 0.015625),
        more)
    fewer = dataclasses.replace(base, canary_min_requests=64)
    add("`canary_min_requests=64` and a healthy canary of 128 requests", _figures("8", 128, 1, 30.0, 0.015625), fewer)
    slow_champion = _figures("7", 8192, 64, 160.0, 0.015625)
    add("a champion slower than the budget and a canary at 120.0 ms", _figures("8", 1024, 8, 120.0, 0.015625),
        champion=slow_champion)
    return tuple(out)


def _compare_verdict(got, expected, trial) -> str | None:
    if not (isinstance(got, tuple | list) and len(got) == 2):
        return f"your rule returned {got!r}; return a pair: (promote, reasons)"
    promote, reasons = got
    if not isinstance(promote, bool | np.bool_):
        return f"the first item of your answer is {promote!r}; it must be True (promote) or False (roll back)"
    if not (isinstance(reasons, list | tuple) and all(isinstance(r, str) for r in reasons)):
        return f"the second item of your answer is {reasons!r}; it must be a list of reasons (strings)"
    if bool(promote) != bool(expected[0]):
        say = "promote" if promote else "roll back"
        should = "promote: every figure is within the policy's bounds (a bound is inclusive: at the bound is " \
                 "within it)" if expected[0] else "roll back: " + "; ".join(r for r in expected[1] if "FAIL" in r
                                                                             or "only" in r)
        return f"your rule says {say}, but it should {should}"
    if not promote and not reasons:
        return "your rule rolls back without reasons: return at least one (the event log shows them)"
    return None


def _log_trial(seed: int) -> Trial:
    rng = np.random.default_rng(seed)
    n_before, n_shadow = int(rng.integers(0, 6)), int(rng.integers(4, 40))
    champion_t = float(rng.choice([0.2, 0.25, 0.4]))
    candidate_t = float(rng.choice([0.3, 0.5, 0.15, 0.35]))
    scores = rng.integers(0, 101, n_before + n_shadow) / 100
    shadow = rng.integers(0, 101, n_before + n_shadow) / 100
    shadow[rng.random(n_before + n_shadow) < 0.15] = candidate_t  # exactly at the candidate's threshold
    rows = []
    for i in range(n_before + n_shadow):
        before = i < n_before
        failed = not before and rng.random() < 0.15 and i < n_before + n_shadow - 1
        rows.append({"transaction_id": f"t{seed}-{i}", "score": scores[i],
                     "decision": "flag" if scores[i] >= champion_t else "approve",
                     "shadow_version": None if before else "5",
                     "shadow_score": np.nan if before or failed else shadow[i],
                     "candidate_error": "TimeoutError: candidate took over 50 ms" if failed else None})
    log = pd.DataFrame(rows)
    if log["shadow_score"].notna().sum() == 0:
        return _log_trial(seed + 1000)
    log["model_version"], log["role"] = "4", "champion"
    extra = seed % 3 == 0
    if extra:  # columns the story's log does not have, whose names contain others' names
        log["shadow_latency_ms"] = rng.integers(1, 40, len(log)).astype(float)
        log["score_bucket"] = (log["score"] * 10).astype(int)
    shuffled = seed % 2 == 1
    if shuffled:
        log = log.sample(frac=1, random_state=seed).reset_index(drop=True)
    compared = int(log["shadow_score"].notna().sum())
    label = (f"a log of {len(log)} payments ({n_before} before the shadow, {compared} scored by both, "
             f"{n_shadow - compared} candidate errors{', rows shuffled' if shuffled else ''}"
             f"{', extra columns' if extra else ''}), the champion's threshold {champion_t} and "
             f"`candidate_threshold={candidate_t}`")
    return Trial(label, (log, candidate_t), size=len(log))


@functools.cache
def shadow_trials() -> tuple:
    return tuple(_log_trial(seed) for seed in range(24))


def _compare_share(got, expected, trial) -> str | None:
    if isinstance(got, bool) or not isinstance(got, int | float | np.integer | np.floating):
        return f"your function returned {type(got).__name__} {got!r}; return the share as a number between 0 and 1"
    if math.isclose(float(got), expected, rel_tol=1e-9, abs_tol=1e-12):
        return None
    return (f"your function returned {float(got):.4f}, expected {expected:.4f}: the share of the payments both "
            "models scored on which the champion's `decision` and the candidate's (`shadow_score >= "
            "candidate_threshold`, its own threshold) differ")


@functools.cache
def drill_trials() -> tuple:
    from .. import data

    today = data.contract_hash()
    out = []

    def add(what, info, expected_version):
        out.append(Trial(f"{what} (/version: {info}, expected_version={expected_version!r})",
                         (info, expected_version), size=len(out)))

    add("the version rolled back to, given as an int", _version_info("3"), 3)
    add("a server on version 13 when you rolled back to 3", _version_info("13"), "3")
    add("a server on version 3 when you rolled back to 13", _version_info("3"), "13")
    add("a server on version 1 when you rolled back to 10", _version_info("1"), 10)
    add("a finished rollback to version 12", _version_info("12"), "12")
    add("a finished rollback, the keys in another order", dict(reversed(list(_version_info("5").items()))), "5")
    add("a finished rollback with extra keys", {**_version_info("5"), "uptime_s": 31.5, "workers": 2}, 5)
    add("a canary of version 3 after rolling back to 4", _version_info("4", "canary", 0.2, "3"), "4")
    add("a shadow of version 9 after rolling back to 8", _version_info("8", "shadow", 0.0, "9"), 8)
    add("a contract hash from another contract", _version_info("5", contract_hash=today[::-1]), "5")
    add("a contract hash missing", {k: v for k, v in _version_info("5").items() if k != "contract_hash"}, "5")
    add("no `rollout` key (an older server)", {k: v for k, v in _version_info("5").items() if k != "rollout"}, "5")
    add("a 503 answer", {"detail": "model not loaded"}, 5)
    add("a 503 answer that names the version it is loading", {"detail": "loading", "version": "5"}, "5")
    add("an empty answer", {}, "2")
    add("a finished rollback to version 2", _version_info("2"), 2)
    add("a rollout still in canary at share 0", _version_info("2", "canary", 0.0, "3"), "2")
    add("a rollback to version 7 served as version 7", _version_info("7"), "7")
    add("a rollback to version 7 while version 70 serves", _version_info("70"), 7)
    add("a rollback to version 21 while version 2 serves", _version_info("2"), "21")
    return tuple(out)


def _random_incident(seed: int) -> Trial:
    rng = np.random.default_rng(seed)
    drift_week = int(rng.integers(2, 5))
    version, rows = 2, []
    for week in range(1, 9):
        if rng.random() < 0.35 or (week > drift_week and rng.random() < 0.6):
            rows.append((week, 7, "alert", None, None, "inputs drift FIRED" if rng.random() < 0.5
                         else "chargebacks up FIRED"))
        if rng.random() < 0.8:
            version += 1
            rows += [(week, 7, "retrain", None, None, "schedule"), (week, 7, "register", str(version), None,
                                                                     f"challenger v{version}")]
            rows += _rollout(week, str(version), bool(rng.random() < 0.5), "a verdict")
    drift_start = LOOP_START + pd.Timedelta(weeks=drift_week)
    alerts = [r for r in rows if r[2] == "alert"]
    exact = seed % 4 == 0 and alerts
    if exact:  # the drift starts exactly when an alert fires: that alert counts
        week, day = alerts[len(alerts) // 2][:2]
        drift_start = LOOP_START + pd.Timedelta(days=7 * (week - 1) + day)
    events = _events(rows)
    after = events[events["at"] >= drift_start]
    first_alert, first_fix = (after.loc[after["kind"] == kind, "at"].min() for kind in ("alert", "promotion"))
    if pd.isna(first_alert) or (pd.notna(first_fix) and first_fix < first_alert):
        return _random_incident(seed + 1000)  # a fix before anyone noticed: not the story a postmortem tells
    if seed % 3 == 1:
        events["detail"] = "from the loop"
        events["alerted_at"] = events["at"]  # a column whose name holds another's
    if seed % 2 == 0:
        events = events.sample(frac=1, random_state=seed).reset_index(drop=True)
    label = (f"event log {seed % 1000} ({len(events)} events over 8 weeks, drift_start={drift_start:%Y-%m-%d %H:%M})"
             f"{' (exactly when an alert fired)' if exact else ''}{', rows shuffled' if seed % 2 == 0 else ''}"
             f"{', extra columns' if seed % 3 == 1 else ''}")
    return Trial(label, (events, drift_start), size=len(events))


def _retry_in_a_week(week, day, version, promoted, why):
    """A quick second try inside one week: canary on ``day``, its verdict two days later."""
    return [(week, day, "register", version, None, f"challenger v{version}"),
            (week, day, "canary", version, None, f"v{version} answers 20% of payments"),
            (week, day + 2, "canary verdict", version, promoted, why),
            (week, day + 2, "promotion" if promoted else "rollback", version, promoted, why)]


def _several_rollbacks(first: int, fixed: bool, how: str, size: int) -> Trial:
    """Two or three rollbacks on the way to the fix, two of them in the same week (a sort by `week`
    keeps the log's order there), versions whose text order is not their time order (9 before 10)."""
    v = [str(first + i) for i in range(4)]
    rows = [(1, 7, "alert", None, None, "chargebacks up FIRED"), *_rollout(1, "3", True, "a verdict"),
            (2, 7, "register", "4", None, "challenger v4"), *_rollout(2, "4", False, "p99 140 ms > 100 ms"),
            (4, 7, "alert", None, None, "inputs drift FIRED"),
            (4, 7, "register", v[0], None, f"challenger v{v[0]}"), *_rollout(4, v[0], False, "error rate 4.1%"),
            *_retry_in_a_week(5, 4, v[1], False, "flag rate 8.0% outside [1.5%, 6.2%]")]
    if how == "three":
        rows += _retry_in_a_week(6, 1, v[2], False, "p99 120 ms > 100 ms")
    if fixed:
        rows += [(6, 7, "register", v[3], None, f"challenger v{v[3]}"), *_rollout(6, v[3], True, "a verdict"),
                 (7, 7, "register", str(first + 9), None, "challenger"), *_rollout(7, str(first + 9), False, "x")]
    events = _events(rows)
    events["at"] += pd.Timedelta(hours=14, minutes=5)  # not midnight: a time cut to its date is another time
    drift_start = DRIFT_START + pd.Timedelta(hours=14, minutes=5)
    if how == "reversed":
        events = events.iloc[::-1].reset_index(drop=True)
    elif how == "three":
        events = events.sample(frac=1, random_state=first).reset_index(drop=True)
        events = events.iloc[::-1].reset_index(drop=True) if _week_order_agrees(events) else events
    label = (f"event log with {'three' if how == 'three' else 'two'} rollbacks before "
             f"{'the fix' if fixed else 'any fix (the incident still open)'} (versions {v[0]} and up, two rollbacks in "
             f"week 5, {len(events)} events, drift_start={drift_start:%Y-%m-%d %H:%M}"
             f"{', rows in reverse order' if how == 'reversed' else ', rows shuffled' if how == 'three' else ''})")
    return Trial(label, (events, drift_start), size=size)


def _week_order_agrees(events) -> bool:
    rolled = events[events["kind"] == "rollback"]
    return list(rolled.sort_values("week", kind="stable")["version"]) == list(rolled.sort_values("at")["version"])


@functools.cache
def incident_trials() -> tuple:
    several = [_several_rollbacks(first, fixed, how, 100 + i) for i, (first, fixed, how) in enumerate(
        ((5, True, "reversed"), (9, True, "reversed"), (9, False, "reversed"), (8, True, "three"),
         (5, True, "in order")))]
    return tuple(_random_incident(seed) for seed in range(22)) + tuple(several)


def _compare_facts(got, expected, trial) -> str | None:
    if not isinstance(got, dict):
        return f"your function returned {type(got).__name__}; return a dict"
    missing = set(expected) - set(got)
    if missing:
        return f"your dict lacks {sorted(missing)}; return the keys {list(expected)}"

    def time(value):
        return None if _missing(value) else pd.Timestamp(value)

    def version(value):
        return None if _missing(value) else str(value)

    if time(got["detected_at"]) != time(expected["detected_at"]):
        return (f"you say detected_at {time(got['detected_at'])}, expected {time(expected['detected_at'])}: the "
                "earliest alert at or after drift_start (an alert exactly at drift_start counts; the log's rows "
                "need not be in time order)")
    if version(got["fixed_by"]) != version(expected["fixed_by"]) or time(got["fixed_at"]) != time(
            expected["fixed_at"]):
        return (f"you say fixed_by {got['fixed_by']!r} at {time(got['fixed_at'])}, expected "
                f"{expected['fixed_by']!r} at {time(expected['fixed_at'])}: the earliest promotion at or after "
                "drift_start (None for both while no promotion came)")
    if not isinstance(got["rolled_back"], list):
        return (f"rolled_back is {type(got['rolled_back']).__name__} {got['rolled_back']!r}; return a list of "
                "versions in the order they were rolled back (a set has no order)")
    mine, theirs = [str(v) for v in got["rolled_back"]], [str(v) for v in expected["rolled_back"]]
    if mine != theirs:
        order = " (the same versions, in another order)" if sorted(mine) == sorted(theirs) else ""
        return (f"you list rolled_back {mine}, expected {theirs}{order}: the rollbacks at or after drift_start and "
                "up to the fix (all of them after drift_start while the incident is open), in the order of their "
                "`at` (the log's rows need not be in time order, and a week holds several days)")
    return None


def _compare_drill(got, expected, trial) -> str | None:
    if not isinstance(got, bool | np.bool_):
        return f"rollback_done returned {got!r}; return True or False"
    if bool(got) == bool(expected):
        return None
    no_rollout = ("rollout" not in trial.args[0] and "version" in trial.args[0]
                  and str(trial.args[0]["version"]) == str(trial.args[1]))
    return (f"you said {bool(got)}, expected {bool(expected)}: done means the served `version` is the one rolled "
            "back to (as text: \"13\" is not \"3\", and 3 and \"3\" are the same version), `rollout.mode` is "
            "'off' and `contract_hash` is today's. An answer without `rollout` does not confirm a rollback: it "
            "does not say that no candidate is still in the rollout, so the drill is not done"
            + (" (here the answer has no `rollout`)" if no_rollout else ""))
