"""The greedy-robustness study's network pool (docs/methods.md §8): the residual and attention
blocks' gradients, the pool's make-up, the confidence interval of the median, report mode
over partial records, and one tiny real network run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refimpl.experiments import greedy_robustness as gr
from refimpl.experiments._records import RunRecords
from refimpl.gradcheck import gradcheck

# ----------------------------------------------------------------------------- blocks


def _check_block(layer, x: np.ndarray) -> float:
    """Largest relative error of the block's hand-written backward against central
    differences of ``sum(y * dy)``, for the input and every parameter (float64)."""
    dy = np.random.default_rng(1).standard_normal(x.shape)
    layer.forward(x)
    dx = layer.backward(dy)
    arrays = [x, *layer.params.values()]
    analytic = [dx.copy(), *(g.copy() for g in layer.grads.values())]

    def probe() -> float:
        value = float(np.sum(layer.forward(x) * dy))
        layer.clear_cache()
        return value

    return gradcheck(probe, arrays, analytic)


def test_residual_block_gradient():
    rng = np.random.default_rng(0)
    layer = gr.ResidualDense(5, 7, rng=rng, dtype=np.float64)
    for name in ("b1", "b2"):  # non-zero biases so that every term is exercised
        layer.params[name][:] = rng.standard_normal(layer.params[name].shape)
    assert _check_block(layer, rng.standard_normal((4, 5))) < 1e-6


def test_attention_block_gradient():
    rng = np.random.default_rng(0)
    layer = gr.SelfAttention(4, rng=rng, dtype=np.float64)
    layer.params["bo"][:] = rng.standard_normal(4)
    # scaled so that the softmax is far from uniform and its Jacobian matters
    assert _check_block(layer, 2.0 * rng.standard_normal((3, 5, 4))) < 1e-6


def test_blocks_skip_the_input_gradient_when_not_needed():
    rng = np.random.default_rng(0)
    for layer, x in ((gr.ResidualDense(3, 4, rng=rng), np.ones((2, 3), np.float32)),
                     (gr.SelfAttention(3, rng=rng), np.ones((2, 4, 3), np.float32))):
        y = layer.forward(x)
        assert y.shape == x.shape and y.dtype == np.float32
        assert layer.backward(np.ones_like(y), need_dx=False) is None
        assert all(g.dtype == np.float32 for g in layer.grads.values())


def test_every_network_builds_and_maps_an_image_to_ten_logits():
    counts = {}
    for net, network in gr.NETWORKS.items():
        model = gr.build_network(net, seed=0, backend="numpy")
        counts[net] = model.num_parameters()
        x = np.zeros((2, *network.shape), np.float32)
        assert model.forward(x).shape == (2, 10)
    assert counts["lrpo_cnn"] == 245_290 and counts["mlp"] == 795_010
    with pytest.raises(ValueError, match="net must be one of"):
        gr.build_network("vgg", 0)


# ----------------------------------------------------------------------------- the pool


def test_networks_are_the_majority_of_the_full_runs():
    per_problem = len(gr.NOISES) * len(gr.SCHEDULERS) * len(gr.OPTIMIZERS)
    networks = len(gr.FULL["networks"]) * gr.FULL["net_seeds"] * per_problem
    functions = len(gr.FUNCTIONS) * gr.FULL["n_seeds"] * per_problem
    assert networks == 1000 and functions == 640
    assert networks > functions
    assert gr.network_share(gr.FULL) == pytest.approx(networks / (networks + functions))
    assert set(gr.FULL["networks"]) == set(gr.NETWORKS) and len(gr.NETWORKS) == 5
    # at least one block beyond plain conv/dense stacks: the residual and attention nets
    assert gr.NETWORKS["resmlp"].layers is not None
    assert gr.NETWORKS["attention"].layers is not None


# ----------------------------------------------------------------------------- CI of the median


def test_median_ci_contains_the_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        values = rng.lognormal(size=n)
        middle, low, high = gr.median_ci(values)
        assert middle == np.median(values)
        assert low <= middle <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.2 * widths[0]


def test_median_ci_order_statistics_are_the_binomial_ones():
    stats = pytest.importorskip("scipy.stats")
    for n in (6, 10, 25, 80, 401):
        rank = gr._order_rank(n, 0.95)
        assert stats.binom.cdf(rank - 1, n, 0.5) <= 0.025 < stats.binom.cdf(rank, n, 0.5)
    values = np.arange(1.0, 11.0)
    assert gr.median_ci(values) == (5.5, 2.0, 9.0)  # n = 10: x_(2), x_(9), coverage 97.9%
    middle, low, high = gr.median_ci([3.0, 1.0, 2.0, 5.0, 4.0])  # n = 5: no 95% interval
    assert middle == 3.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in gr.median_ci([]))


def test_median_ci_covers_the_true_median_at_least_95_percent():
    rng = np.random.default_rng(2)
    true_median = math.log(2.0)  # of the unit exponential
    hits = [low <= true_median <= high
            for low, high in (gr.median_ci(rng.exponential(size=30))[1:] for _ in range(2000))]
    assert np.mean(hits) >= 0.94  # exact coverage at n = 30 is 95.7%


def test_diverged_runs_sort_last_in_the_median():
    middle, low, high = gr.median_ci([1.0] * 6 + [math.inf] * 3)
    assert middle == 1.0 and low == 1.0 and high == math.inf


# ----------------------------------------------------------------------------- report mode

SMALL = {"networks": ("resmlp", "attention"), "net_seeds": 2, "n_seeds": 1,
         "noises": ("none", "spike")}


def _fake_record(final: float) -> dict:
    true = [2.3] * (gr.STEPS - 10) + [final] * 10
    return {"true": true, "final": final, "max_observed": 2.3, "diverged": False}


def _no_data(monkeypatch):
    import refimpl.data

    def refuse(*args, **kwargs):
        raise AssertionError("report mode read Fashion-MNIST")

    monkeypatch.setattr(refimpl.data, "load_fashion_mnist", refuse)


def test_report_with_some_network_runs_states_n(tmp_path, monkeypatch):
    records = RunRecords(tmp_path, "greedy-robustness")
    written = 0
    for opt in gr.OPTIMIZERS:  # seed 0 of resmlp, noise none: 8 of the 32 resmlp runs
        for sched in gr.SCHEDULERS:
            final = 0.5 if sched == "greedy" else 0.7
            records.get_or_run(gr.network_settings("resmlp", opt, "none", sched, 0, 2000),
                               lambda final=final: _fake_record(final))
            written += 1
    _no_data(monkeypatch)
    result = gr.run(results=tmp_path, report=True, out=tmp_path / "out", **SMALL)
    asked = 2 * 2 * len(gr.OPTIMIZERS) * 2 * len(gr.SCHEDULERS)  # nets x seeds x ... = 64
    assert result.records["finished"] == written and result.records["asked"] == asked
    assert any(f"{asked - written} of {asked} network runs have not finished" in note
               for note in result.notes)
    table = result.tables[0]
    rows = {(row[0], row[1]): dict(zip(table.headers, row)) for row in table.rows}
    # per (optimizer, scheduler): 2 networks x 2 noises x 2 seeds asked, 1 finished
    assert rows["adam", "greedy"]["networks"] == "0.5 [n too small] (n=1 of 8)"
    assert rows["adam", "cosine"]["networks"] == "0.7 [n too small] (n=1 of 8)"
    assert rows["adam", "greedy"]["pooled"].endswith("(n=9 of 16)")
    assert rows["adam", "greedy"]["functions"].endswith("(n=8)")
    summary = result.data["medians"]["adam|greedy|networks"]
    assert (summary["median"], summary["n"], summary["asked"]) == (0.5, 1, 8)
    assert math.isnan(summary["low"])
    clean = dict(zip(result.tables[1].headers, result.tables[1].rows[0]))
    assert clean["clean, networks"] == f"{2.3 / 0.5:.4g} [n too small] (n=1 of 4)"
    per_problem = {(row[0], row[1]): row for row in result.tables[2].rows}
    assert per_problem["adam", "attention"][2] == "not run yet (0 of 4)"
    assert per_problem["adam", "resmlp"][2] == "0.5 (n=1 of 4)"
    paired = [row for row in result.tables[4].rows if row[1] == "networks"]
    assert paired[0][3] == 1.0 and paired[0][6] == "1 (n=1 of 8)"
    assert result.figures and (tmp_path / "out" / "results_greedy_robustness.png").is_file()


def test_report_with_no_network_run(tmp_path, monkeypatch):
    _no_data(monkeypatch)
    result = gr.run(results=tmp_path, report=True, out=tmp_path, **SMALL)
    assert result.records["finished"] == 0
    networks = result.tables[0].column("networks")
    assert networks == ["not run yet (0 of 8)"] * len(networks)
    assert all(cell_.endswith("(n=8)") for cell_ in result.tables[0].column("functions"))
    assert result.data["medians"]["adam|greedy|networks"]["n"] == 0
    assert (tmp_path / "results_greedy_robustness.png").stat().st_size > 0
    assert not (tmp_path / "greedy-robustness.jsonl").exists()  # report mode writes nothing


def test_config_names_are_checked():
    with pytest.raises(ValueError, match="networks must be names"):
        gr.run(report=True, networks=("vgg",), n_seeds=1)
    with pytest.raises(ValueError, match="noises must be names"):
        gr.run(report=True, noises=("pink",), n_seeds=1)


# ----------------------------------------------------------------------------- a real run


@pytest.mark.slow
def test_a_tiny_real_network_run_then_its_report(tmp_path, monkeypatch):
    """8 real runs of the residual MLP (noise none, one seed), recorded, then reported
    again from the record file without reading the images."""
    tiny = {"networks": ("resmlp",), "noises": ("none",), "n_seeds": 1, "n_train": 320}
    result = gr.run(quick=True, out=tmp_path, **tiny)
    lines = (tmp_path / "greedy-robustness-quick.jsonl").read_text().splitlines()
    assert len(lines) == len(gr.OPTIMIZERS) * len(gr.SCHEDULERS)
    record = json.loads(lines[0])["record"]
    assert len(record["true"]) == gr.STEPS and not record["diverged"]
    finals = {key: value[0] for key, value in result.data["runs"].items()
              if key.split("|")[1] == "resmlp"}
    assert len(finals) == 8
    # 200 steps on 320 images: every run learns (ln 10 = 2.30 at the start)
    assert all(0.0 < final < 1.5 for final in finals.values())
    _no_data(monkeypatch)
    again = gr.run(quick=True, out=tmp_path, report=True, **tiny)
    assert again.data["runs"] == result.data["runs"]
    assert again.tables[0].rows == result.tables[0].rows
    assert again.tables[0].column("networks")[0].endswith("(n=1)")
