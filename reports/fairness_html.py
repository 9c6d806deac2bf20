"""The fairness section of a day's HTML report: tables and inline SVG, every value escaped."""

from __future__ import annotations

from html import escape

from reports.fairness import Disparity, FairnessResult, GroupMetrics

_BREACHED = "background:#fde2e1"
_TABLE = "border-collapse:collapse;margin:0.5em 0;font-size:0.9em"
_CELL = "border:1px solid #ccc;padding:2px 6px"
_NUM = _CELL + ";text-align:right"

_BAR_HEIGHT = 16
_LABEL_WIDTH = 220
_PLOT_WIDTH = 300


def fairness_html(result: FairnessResult) -> str:
    """An HTML fragment (no <html>/<body>) with the disparities and a table and bar chart per
    grouping. No script and no external resource; every value and name is escaped."""
    p = result.policy
    labels = (
        f"{result.labelled_rows:,} of {result.rows:,} rows labelled"
        if result.labels_present
        else f"{result.rows:,} rows, no labels: TPR, FPR, precision, AUC and equalized odds "
        "are not computed"
    )
    interval = (
        f"{p.n_boot} bootstrap replicates (seed {p.seed}), {_pct(p.ci[1] - p.ci[0])} intervals"
        if p.n_boot
        else "no bootstrap intervals"
    )
    rule = (
        "the whole interval beyond the threshold"
        if p.breach_on == "ci" and p.n_boot
        else "the estimate beyond the threshold"
    )
    parts = [
        '<section class="tw-fairness">',
        "<h2>Bias and fairness</h2>",
        f"<p>{_e(labels)}. Selected: score ≥ {_e(p.threshold)}. Groups under "
        f"{_e(p.min_group_size)} rows are suppressed, and rates whose denominator is under "
        f"{_e(p.min_group_size)} are withheld. {_e(interval)}; a disparity breaches with "
        f"{_e(rule)}.</p>",
        _summary(result),
        _disparity_table(result.disparities),
    ]
    for attributes in result.groupings:
        groups = [g for g in result.groups if g.attributes == attributes]
        column = " × ".join(attributes)
        parts.append(f"<h3>{_e(column)}</h3>")
        parts.append(_bar_chart(column, groups))
        parts.append(_group_table(groups, result.labels_present))
    parts.append("</section>")
    return "\n".join(parts) + "\n"


def _summary(result: FairnessResult) -> str:
    breaches = result.breaches
    if not breaches:
        return "<p><strong>No disparity breaches its threshold.</strong></p>"
    items = "".join(
        f"<li>{_e(d.column)}: {_e(d.metric)} {_num(d.value)} "
        f"(threshold {_num(d.threshold)}; lowest {_e(_group(d.low_group))}, "
        f"highest {_e(_group(d.high_group))})</li>"
        for d in breaches
    )
    return f'<p style="{_BREACHED}"><strong>{len(breaches)} breached:</strong></p><ul>{items}</ul>'


def _disparity_table(disparities: tuple[Disparity, ...]) -> str:
    head = _row(
        "th",
        [
            "grouping",
            "metric",
            "value",
            "interval",
            "threshold",
            "groups compared",
            "excluded (too small)",
            "lowest",
            "highest",
            "status",
        ],
    )
    rows = []
    for d in disparities:
        bound = "max" if d.upper_bound else "min"
        interval = "–" if d.ci_low is None else f"[{_num(d.ci_low)}, {_num(d.ci_high)}]"
        status = "<strong>BREACHED</strong>" if d.breached else _e(d.note or "ok")
        basis = "" if d.basis == "selection_rate" else f" ({d.basis})"
        excluded = ", ".join(_group(g) for g in d.excluded) or "–"
        cells = [
            f'<td style="{_CELL}">{_e(d.column)}</td>',
            f'<td style="{_CELL}">{_e(d.metric + basis)}</td>',
            f'<td style="{_NUM}">{_num(d.value)}</td>',
            f'<td style="{_NUM}">{interval}</td>',
            f'<td style="{_NUM}">{bound} {_num(d.threshold)}</td>',
            f'<td style="{_NUM}">{d.compared}</td>',
            f'<td style="{_CELL}">{_e(excluded)}</td>',
            f'<td style="{_CELL}">{_e(_group(d.low_group))}</td>',
            f'<td style="{_CELL}">{_e(_group(d.high_group))}</td>',
            f'<td style="{_CELL}">{status}</td>',
        ]
        style = f' style="{_BREACHED}"' if d.breached else ""
        rows.append(f"<tr{style}>{''.join(cells)}</tr>")
    return f'<table style="{_TABLE}"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _group_table(groups: list[GroupMetrics], labels_present: bool) -> str:
    head = _row(
        "th",
        ["group", "size", "labelled", "selection rate", "TPR", "FPR", "precision", "AUC", "note"],
    )
    rows = []
    for g in groups:
        if g.suppressed:
            note = "suppressed (small group)"
        elif g.suppressed_metrics:
            note = "withheld (small denominator): " + ", ".join(g.suppressed_metrics)
        else:
            note = ""
        labelled = f"{g.labelled:,}" if labels_present else "–"
        cells = [
            f'<td style="{_CELL}">{_e(g.label)}</td>',
            f'<td style="{_NUM}">{g.size:,}</td>',
            f'<td style="{_NUM}">{labelled}</td>',
            f'<td style="{_NUM}">{_with_ci(g.selection_rate, g.selection_rate_ci)}</td>',
            f'<td style="{_NUM}">{_with_ci(g.tpr, g.tpr_ci)}</td>',
            f'<td style="{_NUM}">{_with_ci(g.fpr, g.fpr_ci)}</td>',
            f'<td style="{_NUM}">{_with_ci(g.precision, g.precision_ci)}</td>',
            f'<td style="{_NUM}">{_num(g.auc)}</td>',
            f'<td style="{_CELL}">{_e(note)}</td>',
        ]
        style = ' style="color:#888"' if g.suppressed else ""
        rows.append(f"<tr{style}>{''.join(cells)}</tr>")
    return f'<table style="{_TABLE}"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _bar_chart(column: str, groups: list[GroupMetrics]) -> str:
    """Horizontal bars of selection rate per group with interval whiskers; suppressed groups
    are named without a bar."""
    height = _BAR_HEIGHT * len(groups) + 24
    width = _LABEL_WIDTH + _PLOT_WIDTH + 60
    x0 = _LABEL_WIDTH
    items = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" style="font:11px sans-serif">',
        f"<title>{_e('selection rate by ' + column)}</title>",
        f'<line x1="{x0}" y1="0" x2="{x0}" y2="{height - 20}" stroke="#999"/>',
    ]
    for i, g in enumerate(groups):
        y = i * _BAR_HEIGHT
        mid = y + _BAR_HEIGHT / 2
        items.append(
            f'<text x="{x0 - 4}" y="{mid + 4:.1f}" text-anchor="end">{_e(_clip(g.label))}</text>'
        )
        if g.selection_rate is None:
            items.append(f'<text x="{x0 + 4}" y="{mid + 4:.1f}" fill="#888">suppressed</text>')
            continue
        w = g.selection_rate * _PLOT_WIDTH
        items.append(
            f'<rect x="{x0}" y="{y + 2}" width="{w:.1f}" height="{_BAR_HEIGHT - 4}" '
            f'fill="#4a7ab5"><title>{_e(g.label)}: {_num(g.selection_rate)}</title></rect>'
        )
        if g.selection_rate_ci is not None:
            lo, hi = (x0 + v * _PLOT_WIDTH for v in g.selection_rate_ci)
            items.append(
                f'<line x1="{lo:.1f}" y1="{mid:.1f}" x2="{hi:.1f}" y2="{mid:.1f}" stroke="#222"/>'
            )
        items.append(
            f'<text x="{x0 + _PLOT_WIDTH + 6}" y="{mid + 4:.1f}">{_num(g.selection_rate)}</text>'
        )
    axis_y = height - 8
    for tick in (0.0, 0.5, 1.0):
        x = x0 + tick * _PLOT_WIDTH
        items.append(f'<text x="{x:.1f}" y="{axis_y}" text-anchor="middle">{tick:g}</text>')
    items.append("</svg>")
    return "".join(items)


def _row(tag: str, names: list[str]) -> str:
    return "<tr>" + "".join(f'<{tag} style="{_CELL}">{_e(n)}</{tag}>' for n in names) + "</tr>"


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    if ci is None:
        return _num(value)
    return f'{_num(value)} <span style="color:#666">[{_num(ci[0])}, {_num(ci[1])}]</span>'


def _group(group: tuple[str, ...] | None) -> str:
    return "–" if group is None else " × ".join(group)


def _clip(text: str, limit: int = 36) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float) -> str:
    return f"{value * 100:g}%"


def _e(value: object) -> str:
    return escape(str(value), quote=True)
