"""Serving CardGuard: a FastAPI app (``create_app``), a real uvicorn server on 127.0.0.1 in a subprocess, or
in a thread of this process (``start_server(in_thread=True)``, as the labs run it), the model bundle the
container ships, and a few client helpers."""

from __future__ import annotations

import importlib

_LAZY = {
    "create_app": "app",
    "app_from_env": "app",
    "served_model": "app",
    "reason_codes": "app",
    "Transaction": "schemas",
    "start_server": "server",
    "ServerHandle": "server",
    "export_bundle": "model",
    "to_payload": "client",
    "latency_quantile": "client",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mlops_lab.serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
