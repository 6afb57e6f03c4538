"""The CardGuard API: ``create_app(...)`` builds it; ``app_from_env()`` is the uvicorn factory
the local server and the container both run.

Endpoints: POST /predict, POST /predict/batch, POST /invocations (MLflow-compatible),
GET /health, GET /ready, GET /metrics, GET /version, POST /admin/reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter, ValidationError

from ..errors import LabError
from .model import LoadedModel, load_from_bundle, load_from_registry
from .predlog import PredictionLog
from .schemas import MAX_BATCH, BatchPrediction, BatchRequest, Prediction, Transaction, VersionInfo

log = logging.getLogger("mlops_lab.serving")
ENDPOINTS = ("/predict", "/predict/batch", "/invocations", "/health", "/ready", "/metrics", "/version",
             "/admin/reload")
_records = TypeAdapter(list[Transaction])  # type: ignore[valid-type]


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

    def serving(self, model: LoadedModel) -> None:
        self.model_info.clear()
        self.model_info.labels(model.name, model.version, model.alias or "", model.contract_hash).set(1)


JSON_ENDPOINTS = ("/predict", "/predict/batch", "/invocations")


def _is_json(scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


class _TimingMiddleware:
    """Pure ASGI middleware: counts and times every request (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = {"code": 500}
        start = time.perf_counter()

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if scope["method"] == "POST" and endpoint in JSON_ENDPOINTS and not _is_json(scope):
                response = _problem(415, "send the body as JSON with 'Content-Type: application/json'")
                await response(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()


# --------------------------------------------------------------------------- errors


def _field_errors(errors, prefix: str = "") -> list[dict]:
    out = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        path = prefix
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        item = {"field": path or "body", "rule": e.get("type", "invalid"), "message": e.get("msg", "")}
        if "input" in e and e.get("type") != "missing" and not isinstance(e["input"], dict | list):
            item["input"] = e["input"]
        out.append(item)
    return out


def _problem(status: int, detail: str, errors: list[dict] | None = None) -> JSONResponse:
    body = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def _json_safe(errors: list[dict]) -> list[dict]:
    for e in errors:
        value = e.get("input")
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            e["input"] = str(value)
    return errors


# --------------------------------------------------------------------------- the app


def single_threaded() -> None:
    """Score on the event loop's thread with one OpenMP/BLAS thread. One payment is a tiny problem:
    waking a second thread costs more than it saves, and its spinning steals the other core
    (measured over HTTP on 2 cores: /predict p50 9.8 ms -> 4.2 ms with the gradient-boosted model).
    Called after each load, in the loop's thread: threadpoolctl only limits libraries already
    loaded, and OpenMP's limit is per thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)



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
) -> FastAPI:
    """Build the CardGuard API. The model comes from ``bundle`` (a folder made by
    ``export_bundle``), else from the registry at ``alias``; ``load_model`` overrides both.
    It is loaded once, off the request path, when the server starts; ``/ready`` answers 503
    (with the reason) until the model has scored its serving examples."""
    if load_model is None:
        if bundle is not None:
            def load_model():
                return load_from_bundle(bundle)
        else:
            def load_model():
                return load_from_registry(alias, name)
    metrics = Metrics()
    state = {"model": None, "reason": "loading the model", "log": None}
    reload_lock = asyncio.Lock()

    def install(model: LoadedModel) -> None:
        """Serve ``model`` from now on: one reference swap, so in-flight requests finish on the old one."""
        single_threaded()
        state["model"], state["reason"] = model, ""
        metrics.serving(model)
        metrics.reloads.labels("loaded").inc()

    async def load_into_state() -> None:
        try:
            model = await asyncio.to_thread(load_model)
        except LabError as exc:
            state["reason"] = f"model not ready: {exc}"
            log.error(state["reason"])
            metrics.reloads.labels("failed").inc()
            return
        except Exception as exc:  # a broken bundle or store: say so, stay up
            state["reason"] = f"model not ready: {type(exc).__name__}: {exc}"
            log.exception(state["reason"])
            metrics.reloads.labels("failed").inc()
            return
        install(model)
        log.info("serving %s v%s (%s), threshold %.6f, fast path %s", model.name, model.version, model.source,
                 model.threshold, "on" if model.scorer else "off")

    async def poll_alias() -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                from .. import registry

                current = state["model"]
                latest = await asyncio.to_thread(registry.alias_version, alias, name)
                if latest is not None and (current is None or latest != current.version):
                    async with reload_lock:
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
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(state["log"].close)

    app = FastAPI(title="CardGuard fraud detector", version="1.0", lifespan=lifespan,
                  description="Scores card payments for fraud. Request schemas come from the data contract.",
                  docs_url=None, redoc_url=None)
    app.state.cardguard = state
    add_offline_docs(app)
    app.add_middleware(_TimingMiddleware, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        errors = _json_safe(_field_errors(exc.errors()))
        bad_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if bad_json:
            where = bad_json[0].get("loc", ("body", "?"))[-1]
            return _problem(400, f"malformed JSON (the parser stopped at character {where})",
                            [{"field": "body", "rule": "json_invalid", "message": bad_json[0].get("msg", "")}])
        return _problem(422, "the request does not match the CardGuard data contract", errors)

    def current_model() -> LoadedModel | None:
        return state["model"]

    def answer(model: LoadedModel, records: list[dict], ids: list[str | None]) -> list[Prediction]:
        scores = model.scores(records)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        out = []
        for record, tx_id, score in zip(records, ids, scores, strict=True):
            decision = "flag" if score >= model.threshold else "approve"
            request_id = uuid.uuid4().hex
            metrics.predictions.labels(model.version, decision).inc()
            state["log"].write({"request_id": request_id, "transaction_id": tx_id, "timestamp": now,
                                "features": record, "score": float(score), "decision": decision,
                                "model_version": model.version})
            out.append(Prediction(transaction_id=tx_id, request_id=request_id, score=float(score),
                                  decision=decision, threshold=model.threshold, model_version=model.version))
        return out

    def not_ready() -> JSONResponse:
        return _problem(503, state["reason"] or "model not loaded")

    def split(transactions) -> tuple[list[dict], list[str | None]]:
        records, ids = [], []
        for tx in transactions:
            values = tx.model_dump()
            ids.append(values.pop("transaction_id"))
            records.append(values)
        return records, ids

    @app.post("/predict", response_model=Prediction, summary="Score one payment")
    async def predict(transaction: Transaction):  # type: ignore[valid-type]
        model = current_model()  # one reference for the whole request: a swap cannot split it
        if model is None:
            return not_ready()
        records, ids = split([transaction])
        return answer(model, records, ids)[0]

    @app.post("/predict/batch", response_model=BatchPrediction, summary=f"Score up to {MAX_BATCH} payments")
    async def predict_batch(batch: BatchRequest):
        model = current_model()
        if model is None:
            return not_ready()
        records, ids = split(batch.transactions)
        return BatchPrediction(predictions=answer(model, records, ids))

    @app.post("/invocations", summary="MLflow scoring-server compatible: dataframe_split or dataframe_records")
    async def invocations(request: Request):
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            return _problem(400, f"malformed JSON: {exc}")
        if not isinstance(body, dict) or len({"dataframe_split", "dataframe_records"} & set(body)) != 1:
            return _problem(422, "send exactly one of 'dataframe_split' or 'dataframe_records' (MLflow's formats)",
                            [{"field": "body", "rule": "format", "message": "expected dataframe_split or dataframe_records"}])
        if "dataframe_split" in body:
            key, split_body = "dataframe_split", body["dataframe_split"]
            try:
                rows = [dict(zip(split_body["columns"], row, strict=True)) for row in split_body["data"]]
            except (KeyError, TypeError, ValueError):
                return _problem(422, "dataframe_split needs 'columns' and 'data' (rows as lists of the same length)",
                                [{"field": "dataframe_split", "rule": "format", "message": "columns and data"}])
        else:
            key, rows = "dataframe_records", body["dataframe_records"]
        if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_BATCH:
            return _problem(422, f"send between 1 and {MAX_BATCH} rows",
                            [{"field": key, "rule": "length", "message": f"1 to {MAX_BATCH} rows"}])
        try:
            transactions = _records.validate_python(rows)
        except ValidationError as exc:
            return _problem(422, "the request does not match the CardGuard data contract",
                            _json_safe(_field_errors(exc.errors(), prefix=key)))
        model = current_model()
        if model is None:
            return not_ready()
        records, ids = split(transactions)
        predictions = answer(model, records, ids)
        return {"predictions": [[1 - p.score, p.score] for p in predictions]}

    @app.get("/health", summary="The process is up")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="The model is loaded and has answered its serving examples")
    async def ready():
        model = current_model()
        if model is None:
            return not_ready()
        return {"status": "ready", "model_version": model.version}

    @app.get("/version", response_model=VersionInfo, summary="Which model is serving, on which data contract")
    async def version():
        model = current_model()
        if model is None:
            return not_ready()
        return model.info()

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Load the model again (new alias target or bundle) and swap it in")
    async def reload(request: Request):
        expected = admin_token if admin_token is not None else os.environ.get("MLOPS_LAB_ADMIN_TOKEN")
        if not expected:
            return _problem(403, "reload is disabled: start the server with MLOPS_LAB_ADMIN_TOKEN set")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _problem(401, "send 'Authorization: Bearer <MLOPS_LAB_ADMIN_TOKEN>'")
        async with reload_lock:
            old = current_model()
            try:
                new = await asyncio.to_thread(load_model)  # load and validate off the request path
            except Exception as exc:
                metrics.reloads.labels("failed").inc()
                log.error("reload failed, still serving v%s: %s", old.version if old else "none", exc)
                return _problem(409, f"reload failed, still serving the old model: {exc}")
            install(new)
        log.info("reloaded: v%s -> v%s", old.version if old else "none", new.version)
        return {"old_version": old.version if old else None, "new_version": new.version}

    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory: ``uvicorn mlops_lab.serving.app:app_from_env --factory``.

    MLOPS_LAB_BUNDLE (a bundle folder) or MLOPS_LAB_MODEL_ALIAS (default champion, from the
    registry), MLOPS_LAB_MODEL_NAME, MLOPS_LAB_POLL_SECONDS, MLOPS_LAB_ADMIN_TOKEN,
    MLOPS_LAB_PREDICTION_LOG."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    poll = os.environ.get("MLOPS_LAB_POLL_SECONDS")
    return create_app(bundle=os.environ.get("MLOPS_LAB_BUNDLE") or None,
                      alias=os.environ.get("MLOPS_LAB_MODEL_ALIAS", "champion"),
                      name=os.environ.get("MLOPS_LAB_MODEL_NAME") or None,
                      poll_seconds=float(poll) if poll else None)

