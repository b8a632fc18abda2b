"""The FastAPI application: pages, JSON API, /metrics, /healthz, static assets, error pages.

``create_app(settings | IndexDB | url)`` builds it over an index; ``meshprov dashboard serve`` runs it with
uvicorn (and optionally a background follower that keeps the index current).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import __version__
from ledger.dashboard import api, pages
from ledger.dashboard.errors import error_code, http_status
from ledger.dashboard.metrics import IndexCollector
from ledger.dashboard.models import ErrorBody, ErrorDetail, Health
from ledger.dashboard.readmodel import ReadModel
from ledger.dashboard.render import render
from ledger.dashboard.sizes import SizeLookup
from ledger.errors import MeshprovError
from ledger.index.db import IndexDB

if TYPE_CHECKING:
    from ledger.content import ContentStore
    from ledger.dashboard.follow import BackgroundFollower
    from ledger.settings import Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


def create_app(
    source: Settings | IndexDB | str,
    *,
    store: ContentStore | None = None,
    follower: BackgroundFollower | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The dashboard over an index: ``Settings`` (its index and content store), an ``IndexDB`` or an index URL.

    ``store`` gives update sizes (default with Settings: the configured store when it exists; none otherwise).
    ``follower`` is started with the app and stopped with it.
    """
    from ledger.settings import Settings

    owned = not isinstance(source, IndexDB)
    # Opened without creating tables: the database may not be up yet (the read model creates them on first use).
    if isinstance(source, Settings):
        db = IndexDB(source.resolved_index_url, create=False)
        if store is None:
            store = _configured_store(source)
    elif isinstance(source, IndexDB):
        db = source
    else:
        db = IndexDB(source, create=False)
    sizes = SizeLookup(store)
    if isinstance(source, Settings):
        settings = source
    model = ReadModel(
        db, sizes=sizes, head=(lambda: follower.head) if follower is not None else None, settings=settings
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if follower is not None:
            follower.start()
        # Fold every member's figures once in the background, so the first visitor does not wait for it.
        threading.Thread(target=model.warm_up, name="meshprov-dashboard-warm-up", daemon=True).start()
        try:
            yield
        finally:
            if follower is not None:
                follower.stop()
            sizes.close()
            if owned:
                db.dispose()

    app = FastAPI(
        title="meshprov dashboard",
        version=__version__,
        description="Rounds, contributors, reputation and rewards of a meshprov consortium, read from the event "
        "index. Read-only. Token amounts are decimal strings of base units (18 decimals), CIDs are CIDv0.",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: /api lists the endpoints offline instead
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.model = model
    app.state.follower = follower
    registry = CollectorRegistry(auto_describe=False)
    registry.register(IndexCollector(model))
    requests = Counter(
        "meshprov_dashboard_requests", "HTTP requests served.", ["route", "status"], registry=registry
    )
    latency = Histogram(
        "meshprov_dashboard_request_seconds",
        "Server time per request.",
        ["route"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5),
        registry=registry,
    )
    app.state.registry = registry

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        requests.labels(route, str(response.status_code)).inc()
        latency.labels(route).observe(elapsed)
        response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.1f}"
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.get("/healthz", response_model=Health, tags=["ops"], responses={503: {"model": ErrorBody}})
    def healthz() -> Health:
        """200 while the index can be read (``empty`` before anything was indexed), 503 when it cannot."""
        info = model.status()
        return Health(
            status="ok" if info is not None else "empty",
            index=info,
            follower=follower.state if follower is not None else None,
        )

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus text exposition of the meshprov_* metrics."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return RedirectResponse("/static/favicon.svg", status_code=308)

    _error_handlers(app)
    return app


def _configured_store(settings: Settings) -> ContentStore | None:
    """The configured content store, if it can exist without writing anything (a local store not created yet
    holds no updates: opening it would create its directory)."""
    from ledger.content import open_store

    if settings.store == "local" and not settings.resolved_store_dir.is_dir():
        return None
    try:
        return open_store(settings)
    except MeshprovError as exc:
        log.warning("update sizes unavailable: %s", exc.message)
        return None


def _wants_json(request: Request) -> bool:
    """API and machine endpoints answer errors in JSON; everything else is a page for people."""
    path = request.url.path
    return path.startswith("/api/") or path in ("/healthz", "/metrics", "/openapi.json")


def _error_response(request: Request, status: int, message: str, hint: str | None) -> Response:
    if _wants_json(request):
        body = ErrorBody(
            error=ErrorDetail(status=status, code=error_code(status), message=message, hint=hint)
        )
        return JSONResponse(body.model_dump(), status_code=status)
    return render(
        request,
        "error.html",
        status_code=status,
        title={404: "Not found", 422: "Invalid input", 503: "Index unavailable"}.get(status, "Error"),
        status=status,
        message=message,
        hint=hint,
    )


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MeshprovError)
    async def foreseen(request: Request, exc: MeshprovError) -> Response:
        return _error_response(request, http_status(exc), exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("path", "query", "body"))
            problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg")))
        return _error_response(
            request,
            422,
            "invalid input: " + "; ".join(problems),
            "check the address, CID or number in the URL",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_response(
                request,
                404,
                f"there is no page at {request.url.path}",
                "start from the overview (/) or the contributors (/contributors); the API is listed at /api",
            )
        return _error_response(request, exc.status_code, str(exc.detail), None)

    @app.exception_handler(Exception)
    async def unforeseen(request: Request, exc: Exception) -> Response:
        log.exception("dashboard error on %s", request.url.path)
        return _error_response(
            request, 500, f"internal error: {type(exc).__name__}", "see the dashboard's log"
        )
