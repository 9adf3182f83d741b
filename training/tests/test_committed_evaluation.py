"""The committed evaluation reports are what the code derives from their results.json: summary.json
and report.md, byte for byte, through `evaluate.core.derive`, the function `evaluate` writes them
with. docs/evaluation/summary.json's `wire` rows come from the committed wire-summary.json beside it
(scripts/wire_compare.py's testbed rows), which results.json does not hold.

Not checked: the PNG plots (matplotlib's bytes change with its version) and
docs/evaluation/sensitivity/, whose supersequence-k2 pair was written before the cross-device
attacker existed (its `observer` names the link attackers of then) and is kept as that run wrote it."""

import json
from pathlib import Path

import pytest

from ipet_train.evaluate.core import derive

EVALUATION = Path(__file__).resolve().parents[2] / "docs" / "evaluation"
# report directory -> the testbed's rows attached to its summary (None: no `wire`)
REPORTS = {"": "wire-summary.json", "whole-home": None, "cross-device": None}


@pytest.mark.parametrize("name", REPORTS, ids=lambda n: f"docs/evaluation/{n}".rstrip("/"))
def test_summary_and_report_are_derived_from_results(name):
    d = EVALUATION / name
    wire = REPORTS[name]
    res = json.loads((d / "results.json").read_text())
    summary, md = derive(res, d / wire if wire else None)
    how = (f"regenerate them: PYTHONPATH=training python3 -c \"import json; from pathlib import Path; "
           f"from ipet_train.evaluate.core import derive; d = Path('{d.relative_to(EVALUATION.parents[1])}'); "
           f"s, md = derive(json.loads((d / 'results.json').read_text())"
           + (f", d / '{wire}'" if wire else "") + "); "
           "(d / 'summary.json').write_text(json.dumps(s, indent=1) + '\\n'); (d / 'report.md').write_text(md)\"")
    committed = json.loads((d / "summary.json").read_text())
    # Compared as data first (a readable difference), then as text (key order, indentation).
    assert summary == committed, f"{d / 'summary.json'} is not what the code derives from results.json; {how}"
    assert json.dumps(summary, indent=1) + "\n" == (d / "summary.json").read_text(), how
    assert md == (d / "report.md").read_text(), f"{d / 'report.md'} is not what the code derives; {how}"
