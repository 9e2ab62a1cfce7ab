"""The workbench's figures, from plain numbers."""
import torch

from app.plots import activation_map, change_heatmap, evaluation_bars, gate_histogram, pgd_curve, spectrum


def test_pgd_curve_has_one_point_per_step_on_two_axes():
    fig = pgd_curve([3.0, 2.0, 1.5], [-9.0, -6.0, -4.5])  # the start and two steps, as pgd() yields them
    assert list(fig.data[0].y) == [3.0, 2.0, 1.5] and list(fig.data[0].x) == [0, 1, 2]
    assert fig.data[1].yaxis == "y2" and list(fig.data[1].y) == [-9.0, -6.0, -4.5]


def test_activation_map_colours_by_gate_and_draws_the_arrow():
    coords = {"forget": torch.zeros(2, 2), "retain": torch.ones(3, 2), "recall": torch.ones(1, 2)}
    hover = {"forget": ["a", "b"], "retain": ["c", "d", "e"], "recall": ["f"]}
    gates = {"forget": torch.tensor([0.9, 1.1], dtype=torch.float64), "retain": torch.tensor([0.0, 0.1, -0.2])}
    fig = activation_map(coords, hover, gates, (torch.tensor([1.0, 1.0]), torch.tensor([2.0, -1.0])),
                         torch.tensor([0.5, 0.5]), "t")
    assert [t.name for t in fig.data] == ["forget", "retain", "recall", "current input"]
    assert list(fig.data[0].marker.color) == [0.9, 1.1] and "gate 0.90" in fig.data[0].text[0]
    assert fig.data[2].marker.color == "#2ca02c"  # recall points have a fixed colour, no gate
    arrow = fig.layout.annotations[0]
    assert (arrow.ax, arrow.ay, arrow.x, arrow.y) == (1.0, 1.0, 3.0, 0.0)


def test_spectrum_marks_the_null_space_and_histogram_splits_sets():
    fig = spectrum(torch.tensor([0.0, 1e-3, 1.0, 10.0]), k=2, layer=3)
    assert fig.layout.yaxis.type == "log" and min(fig.data[0].y) > 0  # zeros clamped for the log axis
    assert fig.layout.shapes[0].x1 == 1.5 and "k=2" in fig.layout.annotations[0].text
    hist = gate_histogram(torch.tensor([1.0, 0.9]), torch.tensor([0.0]), "Layer 3: gate values")
    assert [t.name.split()[0] for t in hist.data] == ["forget", "retain"] and not hist.layout.shapes
    ramped = gate_histogram(torch.tensor([1.0, 0.5, 0.9, 0.2]), torch.tensor([0.0, 0.3, 0.05]), "t", (0.1, 0.6))
    assert [s.x0 for s in ramped.layout.shapes] == [0.1, 0.6]
    notes = [a.text for a in ramped.layout.annotations]
    assert notes == ["floor 0.100: 33.3% of retain rows over it", "full 0.600: 50.0% of forget rows under it"]


def test_change_heatmap_marks_changed_answers():
    fig = change_heatmap([1, 2], [0.0, 1.0], [["a", "b"], ["a", "a"]], "a")
    assert [list(r) for r in fig.data[0].z] == [[0, 1], [0, 0]]
    assert list(fig.data[0].y) == ["layer 1", "layer 2"]


def test_evaluation_bars_in_percent():
    splits = {"forget": {"image_text": {"classification": 0.5, "generation_rougeL": 0.25, "cloze": None,
                                        "refusal_rate": 1.0}}}
    fig = evaluation_bars(splits, "t")
    assert [t.name for t in fig.data] == ["MCQ acc", "ROUGE-L", "cloze", "refusal"]
    assert [t.y[0] for t in fig.data] == [50.0, 25.0, 0, 100.0]


def test_activation_map_draws_sets_without_gates_or_with_empty_ones():
    """Both gate sets empty raised in max(); gates without forget / retain keys raised in cat()."""
    empty = activation_map({"forget": torch.zeros(0, 2), "retain": torch.zeros(0, 2), "recall": torch.ones(2, 2)},
                           {"forget": [], "retain": [], "recall": ["a", "b"]},
                           {"forget": torch.zeros(0), "retain": torch.zeros(0)}, None, None, "t")
    other = activation_map({"recall": torch.ones(2, 2)}, {"recall": ["a", "b"]}, {"other": torch.ones(2)}, None,
                           None, "t")
    assert [t.name for t in empty.data] == ["forget", "retain", "recall"] and empty.data[0].marker.cmax == 1.0
    assert [t.name for t in other.data] == ["recall"]
