"""The bias report card: data first, then terminal / Markdown / JSON / HTML (wing 8).

:mod:`~bias_suite.report.card` builds the card (``ReportCard``) from a finished run and renders the
terminal lines, Markdown and JSON; :mod:`~bias_suite.report.tables` formats numbers and table rows for
every format; :mod:`~bias_suite.report.html` renders the self-contained HTML page with the SVG plots of
:mod:`~bias_suite.report.svg`. May import: wing 1, metrics (2, the registry) and gate (7, rows and changes).
"""

from bias_suite.report.card import ReportCard

__all__ = ["ReportCard"]
