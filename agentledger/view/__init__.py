"""agentledger.view: the local web viewer (``agentledger view``) and the HTML report.

Data flows one way: the viewer reads the store (opened read-only) and the report folds,
and renders HTML; it never writes and never prints. ``agentledger.view.app.create_app``
builds the web application (it needs the ``view`` extra: Starlette and uvicorn);
``render_report`` and ``HtmlReport`` make the self-contained HTML report (Jinja2 only).
"""

from agentledger.view.report import HtmlReport, render_report

__all__ = ["HtmlReport", "render_report"]
