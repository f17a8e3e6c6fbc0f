"""mmm_lib.tables: numbers for reading, no 0..N index, no <NA>, text escaped."""

import numpy as np
import pandas as pd

from mmm_lib.tables import fmt_int, fmt_number, report_table


def test_numbers_read_like_a_report():
    assert fmt_number(851.5303) == "851.5" and fmt_number(2451092.4) == "2,451,092"
    assert fmt_number(0.35) == "0.35" and fmt_number(12000) == "12,000"
    assert fmt_number(-0.0001, 2) == "-0.0001" and fmt_number(3.2e-05) == "0.000032"  # never 3.2e-05
    assert fmt_number(None) == fmt_number(np.nan) == fmt_number(pd.NA) == "–"
    assert fmt_int(541.7) == "542" and fmt_int(12345.2) == "12,345"


def test_report_table_hides_a_range_index_keeps_a_real_one_and_escapes():
    df = pd.DataFrame({"name": ["<b>x</b>", None], "ess": [541.7, 1234.0], "value": [8.515303e02, pd.NA]})
    html = report_table(df, ints=["ess"]).to_html()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>" not in html
    assert "542" in html and "1,234" in html and "851.5" in html and "e+02" not in html
    assert "&lt;NA&gt;" not in html and "nan" not in html and "None" not in html
    assert 'class="row_heading' not in html
    assert 'class="row_heading' in report_table(df.set_index("name")).to_html()
