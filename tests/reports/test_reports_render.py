import json
from html.parser import HTMLParser

from reports import (
    DriftPolicy,
    decide,
    load_drift_json,
    parse_drift_snapshot,
    render_html,
    render_json,
)

HOSTILE = "</script><script>alert(1)</script>"


class ScriptCounter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts = 0
        self.data = []

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.data.append(data)


def count_scripts(html: str) -> int:
    parser = ScriptCounter()
    parser.feed(html)
    return parser.scripts


def test_evidently_html_alone_lets_data_break_out(hostile_drift):
    raw = hostile_drift.snapshot.get_html_str(as_iframe=False)
    assert HOSTILE in raw  # why render_html escapes: if this fails, evidently escapes itself


def test_html_keeps_hostile_values_inside_their_script(hostile_drift, age_drift):
    html = render_html(hostile_drift)
    assert HOSTILE not in html
    assert "alert(1)" in html
    assert "\\u003c/script\\u003e\\u003cscript\\u003ealert(1)" in html
    assert count_scripts(html) == count_scripts(render_html(age_drift))


def test_html_data_stays_valid_json(hostile_drift):
    html = render_html(hostile_drift)
    data_lines = [line for line in html.splitlines() if line.lstrip().startswith("var metric_")]
    assert len(data_lines) == 1
    data = json.loads(data_lines[0].split(" = ", 1)[1].rstrip(";"))
    assert HOSTILE in json.dumps(data, ensure_ascii=False)


def test_json_parses_and_reads_back(age_drift):
    decision = decide(age_drift, DriftPolicy())
    document = json.loads(render_json(age_drift, decision))
    assert document["decision"]["verdict"] == "warn"
    assert document["decision"]["policy"]["retrain_share"] == 0.3
    assert load_drift_json(render_json(age_drift)) == age_drift
    assert set(parse_drift_snapshot(document["evidently"]).columns) == set(age_drift.columns)
