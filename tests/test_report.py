import pytest

import pandas as pd

from utils.report import write_macros, write_table


def test_booktabs_table_escapes_latex(smoke_cfg):
    df = pd.DataFrame({"size (MB)": ["23.1"], "share_fresh": ["57%"], "$\\Delta$acc": ["+0.1"]},
                      index=["onnx-int8_dynamic"])
    path = write_table(df, smoke_cfg, "t", caption="A caption", label="tab:t")
    tex = path.read_text()
    assert path == smoke_cfg.tables_dir / "t.tex"
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\caption{A caption}", "\\label{tab:t}",
                  "share\\_fresh", "57\\%", "onnx-int8\\_dynamic", "$\\Delta$acc"):
        assert token in tex, token


def test_macros_are_letters_only(smoke_cfg):
    p = write_macros(smoke_cfg, {"FPAcc": "87.6"})
    assert "\\newcommand{\\FPAcc}{87.6}" in p.read_text()
    with pytest.raises(ValueError, match="letters only"):
        write_macros(smoke_cfg, {"FP32Acc": "1"})
