"""The CardGuard API: ``create_app(...)`` builds it; ``app_from_env()`` is the uvicorn factory
the local server and the container both run.

Endpoints: POST /predict, POST /predict/batch, POST /invocations (MLflow's scoring protocol),
GET /health, GET /ready, GET /ping, GET /metrics, GET /version, POST /admin/reload, and the docs
(/docs, /redoc) served from the package.

Serving the registry's champion, the server follows the registry's rollout (``registry.rollout()``):
a candidate in shadow scores every payment beside the champion, which answers; in canary it answers
the share of payments whose transaction_id hashes below the share. Changes are loaded off the
request path and swapped in as one reference (``Live``).

The scoring endpoints read their own bodies: a pure ASGI guard checks the content type and caps
the body size (413) before anything is parsed, and pydantic-core parses and validates the JSON in
one pass. Every answer a caller can get is documented in the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from ..errors import LabError
from . import protocol
from .model import LoadedModel, load_from_bundle, load_from_registry, load_version, require_registered
from .predlog import PredictionLog
from .protocol import Problem
from .schemas import (
    MAX_BATCH,
    BatchPrediction,
    BatchRequest,
    InvocationsResponse,
    Prediction,
    ProblemDetail,
    ReloadResult,
    Status,
    Transaction,
    VersionInfo,
)

log = logging.getLogger("mlops_lab.serving")
ENDPOINTS = ("/predict", "/predict/batch", "/invocations", "/health", "/ready", "/ping", "/metrics", "/version",
             "/admin/reload")
JSON, CSV = "application/json", "text/csv"
BODY_TYPES = {"/predict": (JSON,), "/predict/batch": (JSON,), "/invocations": (JSON, CSV)}
MAX_BODY_BYTES = 1_048_576  # 1 MiB: a full batch of 1,000 payments is about 0.3 MB as JSON records
BODY = "cardguard.body"  # where the guard leaves the body in the ASGI scope
Scored = tuple[int, bytes, dict]  # status, JSON body, extra headers
CHAMPION = "champion"  # registry.CHAMPION (not imported: the container's server runs without MLflow)


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Prometheus metrics in a registry of the app's own (two apps in one process never clash)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series only add noise here
        self.registry = CollectorRegistry()
        self.requests = Counter("cardguard_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("cardguard_request_duration_seconds", "Request latency by endpoint", ["endpoint"],
                                 buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                 registry=self.registry)
        self.predictions = Counter("cardguard_predictions", "Predictions by model version and decision",
                                   ["model_version", "decision"], registry=self.registry)
        self.model_info = Gauge("cardguard_model_info", "The model being served (value 1)",
                                ["name", "version", "alias", "contract_hash"], registry=self.registry)
        self.reloads = Counter("cardguard_model_reloads", "Model reloads by outcome", ["outcome"],
                               registry=self.registry)
        self.log_dropped = Counter("cardguard_prediction_log_dropped", "Prediction log records dropped (queue full)",
                                   registry=self.registry)
        self.candidate_errors = Counter("cardguard_candidate_errors", "Payments a rollout candidate failed to score "
                                        "(it raised, or gave a non-finite score); the champion answered them",
                                        ["version", "mode"], registry=self.registry)
        self.rollout = Gauge("cardguard_rollout_share", "The candidate in shadow or canary, and the share of "
                             "payments it answers", ["mode", "candidate_version"], registry=self.registry)
        self.models_loaded = Gauge("cardguard_models_loaded", "Model versions held in memory (champion, and "
                                   "candidate in a rollout)", registry=self.registry)
        self._series: dict = {}

    def serving(self, live: Live) -> None:
        model = live.model
        self.model_info.clear()
        self.model_info.labels(model.name, model.version, model.alias or "", model.contract_hash).set(1)
        self.rollout.clear()
        if live.candidate is not None:
            self.rollout.labels(live.mode, live.candidate.version).set(live.share)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        # labels() looks the series up under a lock on every call: keep the children (hot path)
        key = (endpoint, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (self.latency.labels(endpoint), self.requests.labels(endpoint, str(status)))
        series[0].observe(seconds)
        series[1].inc()


# --------------------------------------------------------------------------- the body guard


BODY_SECONDS = 10.0  # a request's body must arrive within this (MLOPS_LAB_BODY_SECONDS); headers: server.py


def body_seconds() -> float:
    return float(os.environ.get("MLOPS_LAB_BODY_SECONDS") or BODY_SECONDS)


def _raw_response(status: int, body: bytes, headers: tuple = ()) -> list[dict]:
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         *headers]},
            {"type": "http.response.body", "body": body}]


def _content_type_problem(path: str, value: bytes | None) -> str | None:
    """MLflow's rules for the content type: a known media type, charset (if any) UTF-8, no other parameters."""
    allowed = BODY_TYPES[path]
    wanted = " or ".join(f"'Content-Type: {t}'" for t in allowed)
    if value is None:
        return f"no Content-Type: send the body with {wanted}"
    try:
        text = value.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        text = ""
    mime, *params = [part.strip() for part in text.split(";")]
    if mime.lower() not in allowed:
        return f"unsupported Content-Type {mime[:60]!r}: send the body with {wanted}"
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() != "charset":
            return f"unsupported Content-Type parameter {name.strip()[:40]!r}: only charset=utf-8 is understood"
        if val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return "only UTF-8 bodies are accepted (charset=utf-8)"
    return None


class _Guard:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware) in front of the app: counts and times
    every request; for the scoring endpoints it checks the content type (415) and reads the body
    with a cap (413: from Content-Length before reading anything, else counting bytes as they
    arrive, so a chunked body is cut off too). It adds ``Server-Timing: app;dur=<ms>``."""

    def __init__(self, app, metrics: Metrics, max_body_bytes: int, handlers: dict):
        self.app, self.metrics, self.max_body, self.handlers = app, metrics, max_body_bytes, handlers

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = 500

        async def send_timed(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                took = f"app;dur={(time.perf_counter() - start) * 1000:.3f}".encode()
                headers = list(message.get("headers", ()))
                for i, (key, value) in enumerate(headers):
                    if key == b"server-timing":  # the endpoint's score;dur=...: one header, both timings
                        headers[i] = (key, value + b", " + took)
                        break
                else:
                    headers.append((b"server-timing", took))
                message["headers"] = headers
            await send(message)

        try:
            if scope["method"] == "POST" and path in BODY_TYPES:
                problem = await self._read_body(scope, receive)
                if problem is not None:
                    for message in problem:
                        await send_timed(message)
                    return

                handler = self.handlers.get(path)
                if handler is not None:
                    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
                    code, body, extra = handler(scope[BODY], content_type.decode("latin-1"))
                    headers = [(k.encode(), v.encode()) for k, v in extra.items()]
                    for message in _raw_response(code, body, tuple(headers)):
                        await send_timed(message)
                    return

                async def replay():
                    return {"type": "http.request", "body": scope[BODY], "more_body": False}

                await self.app(scope, replay, send_timed)
            else:
                await self.app(scope, receive, send_timed)
        finally:
            self.metrics.observe(endpoint, status, time.perf_counter() - start)

    async def _read_body(self, scope, receive) -> list[dict] | None:
        headers = dict(scope["headers"])
        reason = _content_type_problem(scope["path"], headers.get(b"content-type"))
        if reason is not None:
            return _raw_response(415, protocol.problem_body(415, reason))
        too_big = _raw_response(413, protocol.problem_body(
            413, f"the body is larger than {self.max_body:,} bytes: send at most {MAX_BATCH} payments per request, "
                 "or start the server with a larger MLOPS_LAB_MAX_BODY_BYTES"))
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return _raw_response(400, protocol.problem_body(400, "Content-Length is not a number"))
            if declared > self.max_body:
                return too_big
        chunks, size = [], 0
        try:
            # a client that sends its body slowly (or stops) holds a connection: cut it after BODY_SECONDS
            async with asyncio.timeout(body_seconds()):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return []  # the client left: nothing to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        return too_big
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return _raw_response(408, protocol.problem_body(
                408, f"the body did not arrive within {body_seconds():g} s: send it at once "
                     "(MLOPS_LAB_BODY_SECONDS sets the limit)"), ((b"connection", b"close"),))
        scope[BODY] = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return None


# --------------------------------------------------------------------------- graceful shutdown


class _Drain:
    """Pure ASGI middleware: while the server drains (after SIGTERM), every answer carries
    ``Connection: close``, so keep-alive clients open their next connection elsewhere instead of
    having an idle one closed under a request they are sending."""

    def __init__(self, app, state: dict):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.state.get("draining"):
            return await self.app(scope, receive, send)

        async def closing(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, closing)


@contextlib.contextmanager
def drain_on_sigterm(state: dict, seconds: float):
    """On SIGTERM, mark the app as draining at once (``/ready`` answers 503, answers close their
    connection), keep serving for ``seconds``, then hand the signal to uvicorn, whose shutdown lets
    in-flight requests finish. What Kubernetes expects of a pod: endpoints and clients move away
    before the listening socket closes. Installed only in the main thread of a real server (uvicorn
    installs its own handler first); a second SIGTERM, or ``seconds`` of 0, stops at once."""
    import signal
    import threading

    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()

    def handle(sig, frame):
        if state.get("draining") or not callable(previous):
            return previous(sig, frame) if callable(previous) else None
        state["draining"] = True
        log.info("SIGTERM: draining for %.1f s (/ready answers 503), then shutting down", seconds)
        loop.call_soon_threadsafe(loop.call_later, seconds, previous, sig, None)

    signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handle:
            signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- OpenAPI


def _problems(*codes: int) -> dict:
    why = {400: "The body is not valid JSON (or CSV): syntax, encoding (UTF-8, no lone surrogates), nesting.",
           401: "Missing or wrong 'Authorization: Bearer <token>'.",
           403: "Reloading is disabled (no admin token configured).",
           409: "The new model could not be loaded; the old one keeps serving.",
           413: "The body is larger than the server's limit (MLOPS_LAB_MAX_BODY_BYTES).",
           415: "Unsupported Content-Type (or a charset other than UTF-8).",
           422: "The body does not match the data contract: every error names the field and the rule.",
           503: "The model is not loaded yet (or could not be): the detail says why."}
    return {code: {"model": ProblemDetail, "description": why[code]} for code in codes}


def _body_schema(name: str, csv: bool = False) -> dict:
    content = {JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    if csv:
        content[CSV] = {"schema": {"type": "string"},
                        "example": "amount,merchant_category,channel,hour,customer_age_days,avg_amount_30d,"
                                   "tx_count_24h,distance_from_home_km,country_mismatch,new_device\n"
                                   "42.5,grocery,chip,14,830,55.1,2,3.2,False,False\n"}
    return {"requestBody": {"required": True, "content": content}}


def _invocations_schema(record_ref: str) -> dict:
    """MLflow's four JSON formats. JSON Schema cannot say that a split row matches its columns or
    that columnar lists have one length; the server checks that and answers 422."""
    records = {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {"$ref": record_ref}}
    params = {"type": "object", "description": "Accepted and ignored (this model takes no parameters)."}
    column = {"type": "array", "maxItems": MAX_BATCH, "items": {}}

    def one(key: str, schema: dict) -> dict:
        return {"type": "object", "properties": {key: schema, "params": params}, "required": [key],
                "additionalProperties": False}

    split = {"type": "object", "required": ["columns", "data"], "additionalProperties": False,
             "properties": {"columns": {"type": "array", "items": {"type": "string"}},
                            "data": {"type": "array", "maxItems": MAX_BATCH, "items": {"type": "array"}},
                            "index": {"type": "array"}}}
    return {"title": "MLflowScoringRequest",
            "description": "Exactly one of dataframe_split, dataframe_records, instances, inputs (and "
                           "optionally params): the formats `mlflow models serve` accepts.",
            "oneOf": [one("dataframe_split", split), one("dataframe_records", records), one("instances", records),
                      one("inputs", {"oneOf": [records, {"type": "object", "additionalProperties": column}]})]}


def _install_openapi(app: FastAPI) -> None:
    """FastAPI's schema plus the request bodies the scoring endpoints read themselves."""
    from pydantic.json_schema import models_json_schema

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema([(Transaction, "validation"), (BatchRequest, "validation")],
                                     ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs["$defs"])
        components["MLflowScoringRequest"] = _invocations_schema("#/components/schemas/Transaction")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


# --------------------------------------------------------------------------- the app


def single_threaded() -> None:
    """Score on the event loop's thread with one OpenMP/BLAS thread. One payment is a tiny problem:
    waking a second thread costs more than it saves, and its spinning steals the other core
    (measured over HTTP on 2 cores: /predict p50 9.8 ms -> 4.2 ms with the gradient-boosted model).
    Called after each load, in the loop's thread: threadpoolctl only limits libraries already
    loaded, and OpenMP's limit is per thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


# --------------------------------------------------------------------------- rollout


@dataclass(frozen=True)
class Live:
    """What the server serves, swapped as one reference (a request reads it once, so a change never
    splits a request): the champion, and in a rollout the candidate with its mode and share."""

    model: LoadedModel  # the champion: answers everything unless the canary takes a payment
    candidate: LoadedModel | None = None
    mode: str = "off"  # "off" | "shadow" | "canary"
    share: float = 0.0
    rollout: object = None  # the registry.Rollout this serves (None for a bundle)
    counts: dict = dataclasses.field(default_factory=dict, compare=False)  # version -> decision -> counter

    def info(self) -> dict:
        return {**self.model.info(), "rollout": {"mode": self.mode, "share": self.share, "candidate_version":
                                                 self.candidate.version if self.candidate else None}}


def canary_bucket(key: str) -> float:
    """Where a payment falls in [0, 1): a hash of its transaction_id, the same in every process and
    on every run (Python's hash() is salted per process). A payment goes to the canary when its
    bucket is below the share, so raising the share keeps the payments the canary had."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2**64


def _candidate_scores(candidate: LoadedModel, records: list[dict]) -> tuple[np.ndarray | None, str | None]:
    """The candidate's scores, or None and why: a candidate must never fail a payment."""
    try:
        values = np.asarray(candidate.scores(records), dtype="float64")
        if values.shape != (len(records),):
            raise ValueError(f"{values.shape} scores for {len(records)} payments")
    except Exception as exc:
        return None, f"v{candidate.version} {type(exc).__name__}: {exc}"[:200]
    return values, None


def served_model(request: Request) -> LoadedModel:
    """A FastAPI dependency for routes a team adds to the app (``app.include_router(router)``): the model
    that answers payments now (``.scores(records)``, ``.threshold``, ``.version``), read once per request.
    Until it has loaded, the route answers 503 with the reason, as ``/predict`` does."""
    live = request.app.state.cardguard["live"]
    if live is None:
        raise HTTPException(503, request.app.state.cardguard["reason"] or "model not loaded")
    return live.model


# The signals a fraud analyst reads first on a flagged payment, in the order they are listed.
REASONS = (
    ("new device", lambda p: p["new_device"]),
    ("card and shop in different countries", lambda p: p["country_mismatch"]),
    ("amount over 5x the 30-day average",
     lambda p: p["avg_amount_30d"] is not None and p["amount"] > 5 * p["avg_amount_30d"]),
    ("5 or more payments in 24 h", lambda p: p["tx_count_24h"] >= 5),
    ("over 100 km from home", lambda p: p["distance_from_home_km"] is not None and p["distance_from_home_km"] > 100),
    ("at night (before 6:00)", lambda p: p["hour"] < 6),
)


def reason_codes(payment: dict) -> list[str]:
    """The analyst's signals that hold for ``payment`` (a dict of the contract's features, unknown values
    None), in ``REASONS`` order: what a reviewer reads first, not what the model weighed."""
    return [reason for reason, holds in REASONS if holds(payment)]


DOCS_ASSETS = "/docs-assets"


def add_offline_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from files shipped with the package (fastapi-offline's copies of
    swagger-ui-dist and ReDoc), not a CDN: the pages work offline and behind strict proxies.
    Their links are relative, so the pages also work under a path prefix such as Jupyter's
    ``/proxy/PORT/docs`` (jupyter-server-proxy strips the prefix and tells the app nothing)."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = DOCS_ASSETS.lstrip("/")
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(openapi_url="openapi.json", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{assets}/redoc.standalone.js", redoc_favicon_url=f"{assets}/favicon.png",
                              with_google_fonts=False)


def create_app(
    load_model: Callable[[], LoadedModel] | None = None,
    *,
    bundle: str | Path | None = None,
    alias: str = "champion",
    name: str | None = None,
    prediction_log: str | Path | None = None,
    admin_token: str | None = None,
    poll_seconds: float | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """Build the CardGuard API. The model comes from ``bundle`` (a folder made by
    ``export_bundle``), else from the registry at ``alias``; ``load_model`` overrides both.
    It is loaded once, off the request path, when the server starts; ``/ready`` answers 503
    (with the reason) until the model has scored its serving examples. Bodies larger than
    ``max_body_bytes`` (default MLOPS_LAB_MAX_BODY_BYTES, else 1 MiB) get 413 unread."""
    follow_rollout = load_model is None and bundle is None and alias == CHAMPION
    if load_model is None:
        if bundle is not None:
            def load_model():
                return load_from_bundle(bundle)
        else:
            def load_model():
                return load_from_registry(alias, name)
    if max_body_bytes is None:
        max_body_bytes = int(os.environ.get("MLOPS_LAB_MAX_BODY_BYTES") or MAX_BODY_BYTES)
    metrics = Metrics()
    state = {"live": None, "reason": "loading the model", "log": None}
    reload_lock = asyncio.Lock()
    loaded: dict[str, LoadedModel] = {}  # by version: only what the live rollout needs, so memory stays flat
    warned: set[str] = set()  # candidates whose first failure is in the server log

    def model_at(version: str, role: str) -> LoadedModel:
        model = loaded.get(version) or load_version(version, name, role)
        return model if model.alias == role else dataclasses.replace(model, alias=role)

    def load_live(force: bool) -> Live | None:
        """What the server should serve now (runs in a worker thread: loading takes seconds), or
        None when that is what it serves already. A candidate that cannot load leaves the champion
        serving alone, with the reason logged; the poller does not retry it until the rollout changes."""
        if not follow_rollout:
            return Live(load_model())
        from .. import registry

        current = state["live"]
        wanted = registry.rollout(name)
        if not force and current is not None and current.rollout == wanted:
            return None
        if wanted.champion is None:
            require_registered(CHAMPION, name)  # raises the LabError that says how to get a champion
        champion = model_at(wanted.champion, CHAMPION)
        candidate = None
        if wanted.candidate is not None:
            try:
                candidate = model_at(wanted.candidate, "challenger")
            except Exception as exc:
                metrics.reloads.labels("failed").inc()
                log.error("candidate v%s cannot be loaded, the champion v%s answers alone: %s", wanted.candidate,
                          champion.version, exc)
        loaded.clear()  # drop versions no longer needed (in-flight requests keep theirs alive)
        loaded.update({m.version: m for m in (champion, candidate) if m is not None})
        if candidate is None:
            return Live(champion, rollout=wanted)
        return Live(champion, candidate, wanted.mode, wanted.share, wanted)

    def install(live: Live) -> None:
        """Serve ``live`` from now on: one reference swap, so in-flight requests finish on the old one."""
        single_threaded()
        counts = {m.version: {d: metrics.predictions.labels(m.version, d) for d in ("flag", "approve")}
                  for m in (live.model, live.candidate) if m is not None}
        live = dataclasses.replace(live, counts=counts)
        state["live"], state["reason"] = live, ""
        metrics.serving(live)
        metrics.models_loaded.set(len(loaded) if follow_rollout else 1)
        metrics.reloads.labels("loaded").inc()

    async def refresh(force: bool = False) -> tuple[Live | None, Live | None]:
        """(old, new) after loading what is needed off the request path; new is None when nothing changed."""
        old = state["live"]
        new = await asyncio.to_thread(load_live, force)
        if new is not None:
            install(new)
            if old is None or old.info() != new.info():
                m = new.model
                log.info("serving %s v%s (%s), threshold %.6f, fast path %s; rollout %s", m.name, m.version,
                         m.source, m.threshold, "on" if m.scorer else "off", new.info()["rollout"])
        return old, new

    async def load_into_state() -> None:
        try:
            await refresh(force=True)
        except LabError as exc:
            state["reason"] = f"model not ready: {exc}"
            log.error(state["reason"])
            metrics.reloads.labels("failed").inc()
        except Exception as exc:  # a broken store or an unexpected bug: say so, stay up
            state["reason"] = f"model not ready: {type(exc).__name__}: {exc}"
            log.exception(state["reason"])
            metrics.reloads.labels("failed").inc()

    async def poll_alias() -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                async with reload_lock:
                    if follow_rollout:
                        await (refresh() if state["live"] is not None else load_into_state())
                        continue  # one registry call when nothing changed
                    from .. import registry

                    current = state["live"]
                    latest = await asyncio.to_thread(registry.alias_version, alias, name)
                    if latest is not None and (current is None or latest != current.model.version):
                        await load_into_state()
            except Exception:
                log.exception("alias poller: could not check the registry")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from .. import config

        path = prediction_log or os.environ.get("MLOPS_LAB_PREDICTION_LOG") or config.path("predictions",
                                                                                          "predictions.jsonl")
        state["log"] = PredictionLog(path, on_drop=metrics.log_dropped.inc)
        tasks = [asyncio.create_task(load_into_state())]
        if poll_seconds:
            tasks.append(asyncio.create_task(poll_alias()))
        try:
            with drain_on_sigterm(state, float(os.environ.get("MLOPS_LAB_DRAIN_SECONDS") or 0)):
                yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await asyncio.to_thread(state["log"].close)
            except RuntimeError:  # at interpreter exit (an in-thread server stopped by atexit): no more threads
                state["log"].close()

    app = FastAPI(title="CardGuard fraud detector", version="1.0", lifespan=lifespan,
                  description="Scores card payments for fraud. Request schemas come from the data contract.",
                  docs_url=None, redoc_url=None)
    app.state.cardguard = state
    handlers: dict[str, Callable[[bytes, str], Scored]] = {}  # filled below, once the handlers exist
    app.add_middleware(_Guard, metrics=metrics, max_body_bytes=max_body_bytes, handlers=handlers)
    app.add_middleware(_Drain, state=state)  # outermost: it sees every answer
    add_offline_docs(app)
    _install_openapi(app)
    transaction = Transaction.__pydantic_validator__
    batch = BatchRequest.__pydantic_validator__

    def problem(status: int, detail: str, errors: list[dict] | None = None, headers: dict | None = None) -> Response:
        return Response(protocol.problem_body(status, detail, errors), status_code=status, media_type=JSON,
                        headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        return problem(422, "the request does not match the CardGuard data contract",
                       protocol.field_errors(exc.errors()))

    def not_ready() -> Response:
        return problem(503, state["reason"] or "model not loaded")

    def score_rollout(live: Live, records: list[dict], ids: list) -> tuple[list[dict], float]:
        """Shadow: both models score every payment, the champion answers. Canary: the candidate answers
        the payments whose transaction_id hashes below the share. Whatever the candidate does (raise,
        a non-finite score), the champion answers instead and the error is counted and logged."""
        champion, candidate = live.model, live.candidate
        request_ids = [os.urandom(16).hex() for _ in records]
        n = len(records)
        answer: list = [champion] * n
        cand_scores: list = [None] * n
        errors: list = [None] * n
        if live.mode == "shadow":
            asked = list(range(n))
        else:
            asked = [i for i in range(n) if canary_bucket(ids[i] or request_ids[i]) < live.share]
        started = time.perf_counter()
        cand_ms = 0.0
        if asked:
            values, problem = _candidate_scores(candidate, [records[i] for i in asked])
            cand_ms = (time.perf_counter() - started) * 1000
            for j, i in enumerate(asked):
                value = None if values is None else float(values[j])
                if value is None or not np.isfinite(value):
                    errors[i] = problem or f"v{candidate.version} non-finite score {value}"
                else:
                    cand_scores[i] = value
                    if live.mode == "canary":
                        answer[i] = candidate
            failed = sum(e is not None for e in errors)
            if failed:
                metrics.candidate_errors.labels(candidate.version, live.mode).inc(failed)
                if candidate.version not in warned:  # the first error only: /metrics and the log count them
                    warned.add(candidate.version)
                    log.warning("candidate v%s failed on a payment, the champion answered: %s", candidate.version,
                                next(e for e in errors if e))
        champ_rows = [i for i in range(n) if answer[i] is champion]
        champ_started = time.perf_counter()
        champ_scores = champion.scores([records[i] for i in champ_rows]).tolist() if champ_rows else []
        champ_ms = (time.perf_counter() - champ_started) * 1000
        took = time.perf_counter() - started
        scores = dict(zip(champ_rows, champ_scores, strict=True))
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        write, shadow = state["log"].write, live.mode == "shadow"
        out = []
        for i in range(n):
            model = answer[i]
            value = scores[i] if model is champion else cand_scores[i]
            decision = "flag" if value >= model.threshold else "approve"
            live.counts[model.version][decision].inc()
            write({"request_id": request_ids[i], "transaction_id": ids[i], "timestamp": now, "features": records[i],
                   "score": value, "decision": decision, "model_version": model.version,
                   "score_ms": round(champ_ms if model is champion else cand_ms, 3),
                   "role": "champion" if model is champion else "canary",
                   "shadow_version": candidate.version if shadow else None,
                   "shadow_score": cand_scores[i] if shadow else None,
                   "shadow_score_ms": round(cand_ms, 3) if shadow else None, "candidate_error": errors[i]})
            out.append({"transaction_id": ids[i], "request_id": request_ids[i], "score": value, "decision": decision,
                        "threshold": model.threshold, "model_version": model.version})
        return out, took

    def score(live: Live, transactions) -> tuple[list[dict], float]:
        """Score, log (off the request path) and count; the answers as dicts, and the scoring time."""
        records, ids = [], []
        for tx in transactions:
            values = dict(tx.__dict__)  # the validated fields (cheaper than model_dump)
            ids.append(values.pop("transaction_id"))
            records.append(values)
        if live.mode != "off":
            return score_rollout(live, records, ids)
        model = live.model
        started = time.perf_counter()
        scores = model.scores(records)
        took = time.perf_counter() - started
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        decisions, write, ms = live.counts[model.version], state["log"].write, round(took * 1000, 3)
        out = []
        for record, tx_id, value in zip(records, ids, scores.tolist(), strict=True):
            decision = "flag" if value >= model.threshold else "approve"
            request_id = os.urandom(16).hex()  # as random as uuid4().hex, a third of the cost
            decisions[decision].inc()
            write({"request_id": request_id, "transaction_id": tx_id, "timestamp": now, "features": record,
                   "score": value, "decision": decision, "model_version": model.version, "score_ms": ms,
                   "role": "champion", "shadow_version": None, "shadow_score": None, "shadow_score_ms": None,
                   "candidate_error": None})
            out.append({"transaction_id": tx_id, "request_id": request_id, "score": value, "decision": decision,
                        "threshold": model.threshold, "model_version": model.version})
        return out, took

    # The scoring endpoints as plain functions of the body: the guard calls them directly (FastAPI's
    # routing and dependency solving cost about 0.1 ms a request); the routes below call the same
    # functions, and document the endpoints.
    def scored(content, took: float) -> Scored:
        return 200, json.dumps(content, separators=(",", ":")).encode(), {"server-timing": f"score;dur={took * 1000:.3f}"}

    def refused(p: Problem) -> Scored:
        return p.status, protocol.problem_body(p.status, p.detail, p.errors), {}

    def unready() -> Scored:
        return refused(Problem(503, state["reason"] or "model not loaded"))

    def predict_body(body: bytes, content_type: str) -> Scored:
        try:
            tx = protocol.validate_json(transaction, body)
        except Problem as p:
            return refused(p)
        live = state["live"]  # one reference for the whole request: a swap cannot split it
        if live is None:
            return unready()
        out, took = score(live, [tx])
        return scored(out[0], took)

    def batch_body(body: bytes, content_type: str) -> Scored:
        try:
            payload = protocol.validate_json(batch, body)
        except Problem as p:
            return refused(p)
        live = state["live"]
        if live is None:
            return unready()
        out, took = score(live, payload.transactions)
        return scored({"predictions": out}, took)

    def invocations_body(body: bytes, content_type: str) -> Scored:
        try:
            if content_type == CSV:
                key, rows = protocol.rows_from_csv(body)
            else:
                key, rows = protocol.rows_from_json(body)
            transactions = protocol.validate_rows(key, rows)
        except Problem as p:
            return refused(p)
        live = state["live"]
        if live is None:
            return unready()
        out, took = score(live, transactions)
        return scored({"predictions": [[1 - p["score"], p["score"]] for p in out]}, took)

    handlers.update({"/predict": predict_body, "/predict/batch": batch_body, "/invocations": invocations_body})

    async def routed(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        status, content, headers = handlers[request.url.path](request.scope.get(BODY, b""), content_type)
        return Response(content, status_code=status, media_type=JSON, headers=headers)

    @app.post("/predict", response_model=Prediction, summary="Score one payment",
              responses=_problems(400, 413, 415, 422, 503), openapi_extra=_body_schema("Transaction"))
    async def predict(request: Request):
        return await routed(request)

    @app.post("/predict/batch", response_model=BatchPrediction, summary=f"Score up to {MAX_BATCH} payments",
              responses=_problems(400, 413, 415, 422, 503), openapi_extra=_body_schema("BatchRequest"))
    async def predict_batch(request: Request):
        return await routed(request)

    @app.post("/invocations", response_model=InvocationsResponse, responses=_problems(400, 413, 415, 422, 503),
              openapi_extra=_body_schema("MLflowScoringRequest", csv=True),
              summary="MLflow's scoring protocol: dataframe_split, dataframe_records, instances, inputs, or CSV")
    async def invocations(request: Request):
        return await routed(request)

    @app.get("/health", summary="The process is up", response_model=Status)
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded and has answered its serving examples",
             response_model=Status, responses=_problems(503))
    async def ready():
        live = state["live"]
        if state.get("draining"):
            return problem(503, "shutting down: draining connections")
        if live is None:
            return not_ready()
        return {"status": "ready", "model_version": live.model.version}

    @app.get("/ping", summary="MLflow's and SageMaker's health check: 200 once the model serves",
             response_model=Status, responses=_problems(503))
    async def ping():
        return await ready()

    @app.get("/version", response_model=VersionInfo, summary="Which model is serving, on which data contract",
             responses=_problems(503))
    async def version():
        live = state["live"]
        if live is None:
            return not_ready()
        return live.info()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Load the model again (new alias target or bundle) and swap it in",
              response_model=ReloadResult, responses=_problems(401, 403, 409))
    async def reload(request: Request):
        expected = admin_token if admin_token is not None else os.environ.get("MLOPS_LAB_ADMIN_TOKEN")
        if not expected:
            return problem(403, "reload is disabled: start the server with MLOPS_LAB_ADMIN_TOKEN set")
        given = bearer_token(request.headers.get("authorization"))
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            error = "" if given is None else ', error="invalid_token"'
            return problem(401, "send 'Authorization: Bearer <MLOPS_LAB_ADMIN_TOKEN>'",
                           headers={"WWW-Authenticate": f'Bearer realm="cardguard"{error}'})
        async with reload_lock:
            try:
                old, new = await refresh(force=True)  # load and validate off the request path
            except Exception as exc:
                old = state["live"]
                metrics.reloads.labels("failed").inc()
                log.error("reload failed, still serving v%s: %s", old.model.version if old else "none", exc)
                return problem(409, f"reload failed, still serving the old model: {exc}")
        old_version = old.model.version if old else None
        log.info("reloaded: v%s -> v%s", old_version or "none", new.model.version)
        wanted = new.rollout
        if wanted is not None and wanted.candidate is not None and new.candidate is None:
            return problem(409, f"candidate v{wanted.candidate} could not be loaded (the server log says why): the "
                                f"champion v{new.model.version} answers everything")
        return {"old_version": old_version, "new_version": new.model.version}

    return app


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750: the scheme is
    case-insensitive); None when the header is missing or uses another scheme."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def app_from_env() -> FastAPI:
    """The uvicorn factory: ``uvicorn mlops_lab.serving.app:app_from_env --factory``.

    MLOPS_LAB_BUNDLE (a bundle folder) or MLOPS_LAB_MODEL_ALIAS (default champion, from the
    registry), MLOPS_LAB_MODEL_NAME, MLOPS_LAB_POLL_SECONDS, MLOPS_LAB_ADMIN_TOKEN,
    MLOPS_LAB_PREDICTION_LOG, MLOPS_LAB_DRAIN_SECONDS (seconds to keep serving after SIGTERM, /ready 503)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    poll = os.environ.get("MLOPS_LAB_POLL_SECONDS")
    return create_app(bundle=os.environ.get("MLOPS_LAB_BUNDLE") or None,
                      alias=os.environ.get("MLOPS_LAB_MODEL_ALIAS", "champion"),
                      name=os.environ.get("MLOPS_LAB_MODEL_NAME") or None,
                      poll_seconds=float(poll) if poll else None)

