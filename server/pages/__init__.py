"""The status pages in the browser, their static files, and the API docs served offline
(files in server/pages/).

`mount(app)` adds everything: `/` (overview), `/campaigns/{id}` (and its bulk actions,
`bulk.py`), `/records/{id}`, `/login`, `/logout`, `/static/…`, `/docs` (Swagger UI) and
`/redoc`. Every script and stylesheet comes from this package — nothing from a CDN — so the
pages work on a cluster without internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from farmhand.server.pages import access, bulk, routes
from farmhand.server.pages.render import render
from farmhand.server.views import status, stuck
from farmhand.server.views.charts import Kept

STATIC = Path(__file__).parent / "static"
VENDOR = "/static/vendor"


def mount(app: FastAPI) -> None:
    """Serve the pages, `/static` and the offline `/docs` and `/redoc` on `app`."""
    app.state.throughput = status.Throughput()
    app.state.stuck = stuck.Recent()
    app.state.plots = Kept()  # the pages' plots (views/charts.py)
    app.include_router(access.router)
    app.include_router(routes.router)
    app.include_router(bulk.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(access.LoginRequired)
    async def login_required(request: Request, _: Exception) -> Response:
        return access.login_redirect(request)

    @app.exception_handler(access.Refused)
    async def refused(request: Request, exc: access.Refused) -> Response:
        context = {"message": exc.message, "status": exc.status}
        return render(request, "error.html", context, status_code=exc.status)

    def spec_and_base(request: Request) -> tuple[str, str]:
        base = request.scope.get("root_path", "")
        return base + (app.openapi_url or "/openapi.json"), base

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        """Swagger UI: try the API from the browser (Authorize with a token first)."""
        spec, base = spec_and_base(request)
        return get_swagger_ui_html(
            openapi_url=spec,
            title=f"{app.title} API",
            swagger_js_url=f"{base}{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{base}/static/favicon.svg",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        """ReDoc: the API reference on one page."""
        spec, base = spec_and_base(request)
        return get_redoc_html(
            openapi_url=spec,
            title=f"{app.title} API reference",
            redoc_js_url=f"{base}{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{base}/static/favicon.svg",
            with_google_fonts=False,
        )
