import json
from html.parser import HTMLParser

from reports import (
    DriftPolicy,
    Verdict,
    decide,
    drift_markdown,
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


def test_markdown_summarises_verdict_and_drifted_columns(build, reference, frame):
    result = build(reference, frame(seed=2, age_shift=8, score_shift=0.15))
    decision = decide(result, DriftPolicy())
    assert decision.verdict is Verdict.RETRAIN
    path, url = "s3://lake/reports/adult/2024-01-06.html", "https://signed.example/r.html?sig=x"
    markdown = drift_markdown("adult", "2024-01-06", "v3", result, decision, path, url)
    assert "**Verdict: RETRAIN**" in markdown
    assert "| age | wasserstein |" in markdown
    assert "| score | wasserstein |" in markdown
    assert markdown.count("**yes**") == 2
    assert "age drifted: wasserstein" in markdown
    assert f"[Full HTML report]({url})" in markdown
    unlinked = drift_markdown("adult", "2024-01-06", "v3", result, decision, "/srv/r.html")
    assert "Full HTML report: `/srv/r.html` (run `tidewater serve` for a link)" in unlinked
    assert "adult 2024-01-06 (model v3)" in markdown


def test_markdown_escapes_table_cells(hostile_drift):
    decision = decide(hostile_drift, DriftPolicy())
    markdown = drift_markdown("a|b", "2024-01-06", "v3", hostile_drift, decision, "r.html")
    assert "a\\|b" in markdown
