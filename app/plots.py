"""Plotly figures of the workbench views. Pure functions of numbers (no model, no Gradio), so
each is tested on its own and the UI only places them."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
import torch

FORGET, RETAIN, RECALL, ERASE, CURRENT = "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#111111"
LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=45), height=420)


def pgd_curve(losses: Sequence[float], logprobs: Sequence[float]) -> go.Figure:
    """Target NLL (loss) and target log-probability per PGD step, from step 0 (the clean start,
    as `pgd` yields it) to the last."""
    steps = list(range(len(losses)))
    fig = go.Figure()
    fig.add_scatter(x=steps, y=list(losses), name="loss (target NLL / token)", mode="lines+markers")
    fig.add_scatter(x=steps, y=list(logprobs), name="target log-prob (sum)", mode="lines", yaxis="y2")
    fig.update_layout(**{**LAYOUT, "height": 300}, title="PGD toward the target",
                      xaxis_title="step", yaxis_title="loss", legend=dict(orientation="h", y=-0.3),
                      yaxis2=dict(title="log-prob", overlaying="y", side="right", showgrid=False))
    return fig


def activation_map(coords: dict[str, torch.Tensor], hover: dict[str, list[str]], gates: dict[str, torch.Tensor],
                   arrow: tuple[torch.Tensor, torch.Tensor] | None, current: torch.Tensor | None,
                   title: str, axis: tuple[str, str] = ("PC 1", "PC 2")) -> go.Figure:
    """Forget / retain / recall / erase points in 2-D, coloured by gate value (forget and
    retain), d_erase drawn as an arrow from the recall mean, the current input as a star."""
    fig = go.Figure()
    symbols = {"forget": "circle", "retain": "circle-open", "recall": "diamond", "erase": "x"}
    colours = {"forget": FORGET, "retain": RETAIN, "recall": RECALL, "erase": ERASE}
    vals = torch.cat([torch.zeros(1)] + [gates[k].reshape(-1).float() for k in ("forget", "retain") if k in gates])
    lim = float(max(1.0, vals.abs().max()))  # 0 prepended: empty or missing gate sets draw, with the scale at 1
    for name, xy in coords.items():
        gated = name in gates
        marker = dict(symbol=symbols.get(name, "circle"), size=8 if gated else 9,
                      line=dict(width=1, color=colours.get(name, "#444")))
        if gated:
            marker.update(color=gates[name].tolist(), colorscale="RdBu_r", cmin=-lim, cmax=lim,
                          showscale=name == "forget", colorbar=dict(title="gate c(h)", x=1.02))
        else:
            marker["color"] = colours.get(name, "#444")
        text = [f"{h}<br>gate {g:.2f}" for h, g in zip(hover[name], gates[name].tolist())] if gated else hover[name]
        fig.add_scatter(x=xy[:, 0].tolist(), y=xy[:, 1].tolist(), mode="markers", name=name, marker=marker,
                        text=text, hovertemplate="%{text}<extra>" + name + "</extra>")
    if arrow is not None:
        start, vec = arrow
        x0, y0 = float(start[0]), float(start[1])
        x1, y1 = x0 + float(vec[0]), y0 + float(vec[1])
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=3, arrowsize=1.5, arrowwidth=3, arrowcolor=CURRENT, text="d_erase")
    if current is not None:
        fig.add_scatter(x=[float(current[0])], y=[float(current[1])], mode="markers", name="current input",
                        marker=dict(symbol="star", size=18, color="#ffbf00", line=dict(width=2, color=CURRENT)))
    fig.update_layout(**{**LAYOUT, "height": 540}, title=title, xaxis_title=axis[0], yaxis_title=axis[1],
                      legend=dict(orientation="h", y=-0.18))
    return fig


def spectrum(eigenvalues: torch.Tensor, k: int, layer: int) -> go.Figure:
    """Retain Gram eigenvalues (ascending, log scale); the k smallest span the null space."""
    ev = eigenvalues.double().clamp_min(1e-12).tolist()
    fig = go.Figure()
    fig.add_scatter(x=list(range(len(ev))), y=ev, mode="lines", name="eigenvalue")
    fig.add_vrect(x0=-0.5, x1=k - 0.5, fillcolor="#2ca02c", opacity=0.12, line_width=0,
                  annotation_text=f"null space (k={k})", annotation_position="top left")
    fig.update_layout(**{**LAYOUT, "height": 340}, title=f"Layer {layer}: retain spectrum H_r^T H_r",
                      xaxis_title="index (ascending)", yaxis_title="eigenvalue", yaxis_type="log")
    return fig


def gate_histogram(forget: torch.Tensor, retain: torch.Tensor, title: str,
                   ramp: tuple[float, float] | None = None) -> go.Figure:
    """Distribution of the gate c(h) on forget (target 1) and retain (target 0) activations; with
    a ramp (floor, full value), its two lines and the rows on the wrong side of each: retain rows
    over the floor are steered, forget rows under the full value are steered only in part."""
    fig = go.Figure()
    fig.add_histogram(x=forget.tolist(), name="forget (target 1)", marker_color=FORGET, opacity=0.7,
                      histnorm="probability", nbinsx=40)
    fig.add_histogram(x=retain.tolist(), name="retain (target 0)", marker_color=RETAIN, opacity=0.7,
                      histnorm="probability", nbinsx=40)
    if ramp is not None:
        floor, full = ramp
        over = 100 * float((retain > floor).double().mean()) if len(retain) else 0.0
        under = 100 * float((forget < full).double().mean()) if len(forget) else 0.0
        fig.add_vline(x=floor, line_dash="dash", line_color=RETAIN,
                      annotation_text=f"floor {floor:.3f}: {over:.1f}% of retain rows over it")
        fig.add_vline(x=full, line_dash="dash", line_color=FORGET, annotation_position="bottom right",
                      annotation_text=f"full {full:.3f}: {under:.1f}% of forget rows under it")
    fig.update_layout(**{**LAYOUT, "height": 340}, barmode="overlay", title=title,
                      xaxis_title="c(h) = h . u", yaxis_title="share")
    return fig


def change_heatmap(layers: Sequence[int], strengths: Sequence[float], answers: Sequence[Sequence[str]],
                   original: str) -> go.Figure:
    """Strength x layer grid: 1 where the steered answer differs from the original (hover: answer)."""
    z = [[int(a.strip() != original.strip()) for a in row] for row in answers]
    fig = go.Figure(go.Heatmap(z=z, x=[f"{s:g}" for s in strengths], y=[f"layer {l}" for l in layers],
                               text=[[a[:60] for a in row] for row in answers], zmin=0, zmax=1,
                               colorscale=[[0, "#e8eef6"], [1, "#d62728"]], showscale=False,
                               hovertemplate="%{y}, strength %{x}<br>%{text}<extra></extra>"))
    fig.update_layout(**{**LAYOUT, "height": 110 + 40 * len(layers)},
                      title="Answer changed? (red) — one layer steered at a time", xaxis_title="strength")
    return fig


def evaluation_bars(splits: dict, title: str) -> go.Figure:
    """MCQ accuracy, ROUGE-L, cloze and refusal per split (image+text), as grouped bars."""
    metrics = (("classification", "MCQ acc"), ("generation_rougeL", "ROUGE-L"), ("cloze", "cloze"),
               ("refusal_rate", "refusal"))
    fig = go.Figure()
    names = list(splits)
    for key, label in metrics:
        ys = [(splits[s].get("image_text") or next(iter(splits[s].values()), {})).get(key) for s in names]
        fig.add_bar(x=names, y=[0 if y is None else 100 * y for y in ys], name=label)
    fig.update_layout(**{**LAYOUT, "height": 360}, barmode="group", title=title, yaxis_title="%",
                      yaxis_range=[0, 100])
    return fig
