"""`tip-decode view`: one self-contained HTML page to read the reasoning of a run or a trace file.

`data` arranges analysed responses (`tip_decode.analysis.ResponseAnalysis`, computed exactly as
`tip-decode analyze` computes them) per problem and configuration, and marks switch words and TIP's
penalty window in each thought; `page` inlines that data, the style and the script
(`static/`) into one HTML file that needs no network. docs/analysis.md ("The trace viewer")
describes the page.
"""

from tip_decode.viewer.data import ConfigView, Trace, build_page_data, penalised_steps, tip_window
from tip_decode.viewer.page import read_page_data, render_page, write_page

__all__ = ["ConfigView", "Trace", "build_page_data", "penalised_steps", "read_page_data", "render_page", "tip_window", "write_page"]
