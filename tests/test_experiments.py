"""A reduced DDIM Table-1/Table-2 sweep reproduces the trends the notebook reports."""
import json
from pathlib import Path

import pytest
import torch

from course_lib.tools.experiments import QUICK, ddim_tables

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # reduced sweeps of the tooling: in ./course test, not in ./course test --fast


@pytest.fixture(scope="module")
def quick():
    return ddim_tables(QUICK, log=lambda *a: None)


def test_quick_sweep_trends(quick):
    res, samples = quick
    ring = res["table1_ring_exact"]
    # more steps, better samples; sigma-hat is far worse than DDIM at few steps
    assert ring["eta=0.0"]["50"]["mmd"] < ring["eta=0.0"]["10"]["mmd"]
    assert ring["sigma_hat"]["10"]["mmd"] > 3 * ring["eta=0.0"]["10"]["mmd"]
    shapes = res["table1_shapes_ddpm16"]
    assert shapes["sigma_hat"]["10"]["fd"] > 5 * shapes["eta=0.0"]["10"]["fd"]
    assert shapes["eta=1.0"]["50"]["accuracy"] >= 0.9
    t2 = res["table2"]
    assert t2["shapes_ddpm16"][1] < t2["shapes_ddpm16"][0] and t2["ring_exact"][1] < t2["ring_exact"][0]
    assert samples["eta=0.0|S=10"].shape == (16, 3, 16, 16)
    # every number carries its spread: bootstrap intervals on shapes, the range over x_T seeds on the ring
    cell = shapes["eta=0.0"]["10"]
    assert cell["fd_interval"][0] <= cell["fd"] <= cell["fd_interval"][1]
    assert cell["fd_independent_interval"][0] <= cell["fd_independent"] <= cell["fd_independent_interval"][1]
    ring_cell = ring["eta=0.0"]["10"]
    assert ring_cell["mmd_range"][0] <= ring_cell["mmd"] <= ring_cell["mmd_range"][1]
    assert res["real_vs_real_shapes"]["fd"] < shapes["sigma_hat"]["10"]["fd_interval"][0]
    quad = res["table1_shapes_ddpm16_quadratic"]
    assert set(quad) == set(QUICK["quadratic_rows"]) and set(quad["eta=0.0"]) == {"10"}
    assert quad["eta=0.0"]["10"]["fd"] != cell["fd"], "another sub-sequence, other samples"
    # the largest S runs only for the DDPM reference row; the others are absent without --carry
    assert "50" in shapes["eta=1.0"] and "50" not in shapes["eta=0.0"]


def test_shipped_results_file_is_complete_and_shows_the_same_trends():
    res = json.loads((ROOT / "course_lib" / "results" / "ddim_tables.json").read_text())
    shapes = res["table1_shapes_ddpm16"]
    assert set(shapes) == {"eta=0.0", "eta=0.2", "eta=0.5", "eta=1.0", "sigma_hat"}
    assert all(set(row) == {"10", "20", "50", "100", "1000"} for row in shapes.values())
    for label, row in shapes.items():  # every cell measured, with its interval (ddim-fill measured the carried ones)
        for S, cell in row.items():
            assert not cell.get("carried") and cell["fd_interval"][0] <= cell["fd"] <= cell["fd_interval"][1], (label, S)
    assert set(res["table1_shapes_ddpm16_quadratic"]["eta=0.0"]) == {"10", "20", "50", "100"}
    assert shapes["sigma_hat"]["10"]["fd"] > 5 * shapes["eta=0.0"]["10"]["fd"]
    assert shapes["eta=0.0"]["1000"]["fd"] < shapes["eta=0.0"]["10"]["fd"]
    errs = res["table2"]["shapes_ddpm16"]
    assert errs[0] > errs[2] > errs[-1]


def test_speed_measurement_reports_ratios():
    from course_lib.tools.experiments import ddim_speed
    out = ddim_speed(num_images=4, repeats=1, steps=(40, 4), log=lambda *a: None)
    assert out["speedup"][4]["network_evaluations"] == 10
    # the wall-clock ratio is reported, not asserted: timings belong to the benchmark, not to a test
    assert out["speedup"][4]["wall_clock"] > 0 and set(out["median_seconds"]) == {40, 4}


def test_quick_guidance_sweep_trends():
    from course_lib.tools.experiments import guidance_table
    res, samples = guidance_table(scales=(0.0, 5.0), n=32, steps=10, log=lambda *a: None)
    for m in ("cg_uncond", "cfg"):
        assert res[m]["5.0"]["accuracy"] > res[m]["0.0"]["accuracy"] + 0.4
    # at scale 0 every method on the unconditional model is the same sampler from the same x_T
    assert res["cg_uncond"]["0.0"] == {**res["cfg"]["0.0"], "seconds": res["cg_uncond"]["0.0"]["seconds"]}
    assert samples["cfg|5.0"].shape == (16, 3, 16, 16)


def test_shipped_guidance_results_show_the_tradeoff():
    res = json.loads((ROOT / "course_lib" / "results" / "guidance_table.json").read_text())
    cg = res["cg_uncond"]
    assert set(cg) == {"0.0", "0.5", "1.0", "2.0", "5.0", "10.0"}
    assert cg["10.0"]["accuracy"] > cg["1.0"]["accuracy"] > cg["0.0"]["accuracy"]
    assert cg["10.0"]["precision"] > cg["0.0"]["precision"] and cg["10.0"]["recall"] < cg["0.0"]["recall"]
    # what notebook 02 concludes, with the intervals it reads: no scale beats s = 0 beyond noise, s = 10 is worse
    fd = {s: cg[s]["fd_interval"] for s in cg}
    assert all(fd[s][0] <= fd["0.0"][1] and fd[s][1] >= fd["0.0"][0] for s in cg if s != "10.0")
    assert fd["10.0"][0] > fd["0.0"][1]
    assert res["cfg"]["0.5"]["accuracy"] > cg["0.5"]["accuracy"] + 0.2  # classifier-free: stronger at low scales
    assert res["cfg"]["10.0"]["fd_interval"][0] > cg["10.0"]["fd_interval"][1]  # and worse at high ones
    clean = res["cg_uncond_clean"]["10.0"]  # the tool's own features see the damage; the independent ones barely
    assert clean["fd"] > 2 * cg["10.0"]["fd"] and clean["fd_independent"] < clean["fd"] / 10
    assert set(res["cg_uncond_alg1"]) == set(cg) and set(res["cg_cond_alg1"]) == set(cg)
    assert res["real_vs_real"]["fd_interval"][0] <= res["real_vs_real"]["fd"] <= res["real_vs_real"]["fd_interval"][1]


def test_quick_vq_sweep_trends():
    from course_lib.tools.experiments import vq_sweeps
    res, samples = vq_sweeps(steps=40, batch_size=32, betas=(0.25,), bits=(8,), log=lambda *a: None)
    voc = res["vocabulary"]
    assert voc["lfq"]["8"]["usage"] > 5 * voc["lfq_no_entropy"]["8"]["usage"]  # the entropy term spreads usage
    assert res["health"]["restarts"]["usage"] > 2 * res["health"]["plain"]["usage"]  # restarts revive dead codes
    assert samples["lfq|8"].shape == (8, 3, 16, 16) and len(res["health"]["ema"]["history"]) > 2


def test_a_missing_result_names_the_file_and_the_command_that_rebuilds_it(tmp_path, monkeypatch):
    import course_lib
    assert course_lib.results_path("ddim_tables.json").is_file()
    monkeypatch.setattr(course_lib, "RESULTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'vq_sweeps.json' is missing.*./course experiments vq`"):
        course_lib.results_path("vq_sweeps.json")
    with pytest.raises(FileNotFoundError, match=r"'guidance_samples.safetensors'.*experiments guidance`"):
        course_lib.results_path("guidance_samples.safetensors")
    with pytest.raises(FileNotFoundError, match="no sweep writes it"):
        course_lib.results_path("nothing.json")


def test_the_sweeps_write_where_the_notebooks_read():
    from course_lib import results_path
    from course_lib.tools import experiments

    assert experiments.RESULTS == results_path("ddim_tables.json").parent


def test_the_lpips_results_carry_the_papers_table5_rows_for_each_of_ours():
    import json

    from course_lib import results_path
    from course_lib.tools.experiments import PAPER_TABLE5_2AFC

    r = json.loads(results_path("lpips_2afc.json").read_text())
    assert r["paper_table5_2afc"] == PAPER_TABLE5_2AFC
    table = PAPER_TABLE5_2AFC
    assert table["rows"]["Alex-lin"] == [73.9, 69.8] and table["rows"]["Human (oracle)"][1] == 73.9
    for ours, row in table["ours"].items():
        assert row in table["rows"] and len(table["rows"][row]) == len(table["columns"]), ours
    assert set(r["agreement"]) <= set(table["ours"]) and "random backbone, unweighted" in r["agreement"]


def test_vq_sweep_runs_only_the_named_parts_and_carries_the_rest():
    from course_lib.tools.experiments import vq_sweeps

    previous = ({"beta": {}, "vocabulary": {"vq": {"4": {"psnr_db": 1.0}}}, "health": {"plain": {"usage": 0.1}}},
                {"vq|4": torch.zeros(8, 3, 16, 16), "health|plain": torch.ones(8, 3, 16, 16),
                 "originals": torch.ones(1)})
    res, samples = vq_sweeps(steps=3, batch_size=8, betas=(0.25,), seeds=(11, 12), parts=("beta",),
                             carry=previous, log=lambda *a: None)
    assert res["carried_parts"] == ["vocabulary", "health"]
    assert res["vocabulary"] == previous[0]["vocabulary"] and res["health"] == previous[0]["health"]
    assert set(res["beta"]) == {"0.25"} and res["beta"]["0.25"]["seeds"] == [11, 12]
    low, high = res["beta"]["0.25"]["psnr_db_range"]
    assert low <= res["beta"]["0.25"]["psnr_db"] <= high and len(res["beta"]["0.25"]["per_seed"]) == 2
    assert torch.equal(samples["vq|4"], previous[1]["vq|4"]) and "beta|0.25" in samples
    assert not torch.equal(samples["originals"], previous[1]["originals"]), "this run's probe images, not carried"
    with pytest.raises(ValueError, match="parts: expected some of"):
        vq_sweeps(parts=("betas",))


def test_quick_ldm_compute_curve_counts_flops_and_measures_each_snapshot():
    from course_lib.tools.experiments import ldm_compute

    res, samples = ldm_compute(steps=4, snapshot_steps=(2, 4), n=16, log=lambda *a: None)
    latent, pixel = res["models"]["shapes_ldm32"], res["models"]["shapes_pixel32"]
    for row in (latent, pixel):
        assert [s["steps"] for s in row["snapshots"]] == [2, 4]
        for s in row["snapshots"]:
            assert s["training_flops"] == s["steps"] * row["step_flops"]
            low, high = s["quality"]["fd_interval"]
            assert low <= s["quality"]["fd"] <= high and "all_interval" in s["caption_following"]
    assert pixel["step_flops"] > 3 * latent["step_flops"] and latent["autoencoder_training_flops"] > 0
    assert "autoencoder_training_flops" not in pixel and pixel["shipped_steps"] == 600
    assert samples["shapes_pixel32|4"].shape == (8, 3, 32, 32) and set(samples) == {
        f"{m}|{k}" for m in ("shapes_ldm32", "shapes_pixel32") for k in (2, 4)}


def test_ddim_fill_measures_exactly_the_carried_cells_as_the_sweep_does(quick):
    import copy

    from course_lib.tools.experiments import ddim_fill_carried

    res, samples = quick
    measured = res["table1_shapes_ddpm16"]["eta=1.0"]["50"]
    previous = copy.deepcopy(res)
    previous.update(command="./course experiments ddim --quick", wall_time_s=12.0)
    previous["table1_shapes_ddpm16"]["eta=1.0"]["50"] = {"fd": 99.0, "nfe": 50, "carried": True}
    filled, filled_samples = ddim_fill_carried(QUICK, (previous, {**samples, "eta=1.0|S=50": torch.zeros(1)}),
                                               log=lambda *a: None)
    cell = filled["table1_shapes_ddpm16"]["eta=1.0"]["50"]
    assert {k: v for k, v in cell.items() if k != "seconds"} == {k: v for k, v in measured.items() if k != "seconds"}
    assert "carried" not in cell and "fd_interval" in cell
    assert torch.equal(filled_samples["eta=1.0|S=50"], samples["eta=1.0|S=50"])
    assert filled["filled_cells"] == ["eta=1.0|S=50"]
    assert filled["earlier_runs"] == [{"command": "./course experiments ddim --quick", "wall_time_s": 12.0}]
    untouched = {k: v for k, v in filled.items() if k not in ("table1_shapes_ddpm16", "filled_cells", "earlier_runs")}
    assert untouched == {k: v for k, v in previous.items() if k != "table1_shapes_ddpm16"}
    assert previous["table1_shapes_ddpm16"]["eta=1.0"]["50"]["carried"], "the carried results are not modified"


def test_shipped_ldm_compute_results_back_notebook_06s_claims():
    from course_lib import checkpoints, results_path

    r = json.loads(results_path("ldm_compute.json").read_text())
    latent, pixel = r["models"]["shapes_ldm32"], r["models"]["shapes_pixel32"]
    for row in (latent, pixel):
        assert [s["steps"] for s in row["snapshots"]] == r["config"]["snapshot_steps"]
        assert all(s["training_flops"] == s["steps"] * row["step_flops"] for s in row["snapshots"])
    final = latent["snapshots"][-1]["quality"]
    shipped = checkpoints.manifest()["shapes_ldm32"]["metrics"]["quality"]["fd"]
    assert final["fd_interval"][0] <= shipped <= final["fd_interval"][1], "the latent run is the shipped recipe again"
    # at about equal diffusion compute (latent 3000 steps, pixel 600) the intervals are far apart
    equal = next(s for s in pixel["snapshots"] if s["steps"] == 600)
    assert abs(equal["training_flops"] / latent["snapshots"][-1]["training_flops"] - 1) < 0.1
    assert final["fd_interval"][1] < equal["quality"]["fd_interval"][0]
    # the pixel model improves with compute but stays above the latent model at its largest budget
    fds = [s["quality"]["fd"] for s in pixel["snapshots"]]
    assert fds == sorted(fds, reverse=True)
    assert final["fd_interval"][1] < pixel["snapshots"][-1]["quality"]["fd_interval"][0]
    assert pixel["snapshots"][-1]["caption_following"]["all"] == 1.0


def test_quick_controlnet_table_measures_the_base_the_sweep_and_the_composition():
    from course_lib.tools.experiments import controlnet_table

    res, samples = controlnet_table(n=16, steps=4, strengths=(0.0, 1.0), n_compose=8, log=lambda *a: None)
    base = res["base"]["base, colour and shape caption"]
    # strength 0 is the frozen model bit for bit: the same noise gives the same images, hence the same numbers
    assert torch.equal(samples["strength 0.0"], samples["base, colour and shape caption"])
    assert res["strength"]["0.0"]["iou"] == base["iou"]
    for row in [*res["base"].values(), *res["strength"].values()]:
        assert row["iou_interval"][0] <= row["iou"] <= row["iou_interval"][1]
        assert row["quality"]["fd_interval"][0] <= row["quality"]["fd"] <= row["quality"]["fd_interval"][1]
    assert len(res["compose"]) == 4 and all(0 <= v["both_drawn"] <= 1 for v in res["compose"].values())
    assert samples["compose|hints"].shape == (8, 2, 32, 32) and samples["hints"].shape == (8, 1, 32, 32)


def test_shipped_controlnet_results_back_notebook_07s_claims():
    from course_lib import checkpoints, results_path

    r = json.loads(results_path("controlnet_table.json").read_text())
    m = checkpoints.manifest()["shapes_controlnet32"]["metrics"]["caption"]
    sweep = r["strength"]
    # the sweep's strength 1 is the shipped evaluation again (same hints, captions and noise)
    assert sweep["1.0"]["iou_interval"][0] <= m["iou"] <= sweep["1.0"]["iou_interval"][1]
    # strength 0 is the frozen base: far below, intervals apart; and the base's own row says the same
    assert sweep["0.0"]["iou_interval"][1] < sweep["1.0"]["iou_interval"][0]
    assert sweep["0.0"]["iou"] == r["base"]["base, colour and shape caption"]["iou"]
    # the full caption tells the base the cell and size in words: better than no position, worse than the mask
    full = r["base"]["base, full caption"]
    assert sweep["0.0"]["iou_interval"][1] < full["iou_interval"][0] and full["iou_interval"][1] < m["iou_interval"][0]


def test_quick_imagen_table_measures_thresholding_the_cascade_and_the_grid():
    from course_lib.tools.experiments import imagen_table

    res, samples = imagen_table(n=16, steps=4, weights=(1.0, 16.0), aug_levels=(0.0, 0.4),
                                grid=("shapes_base16_small_c16", "shapes_base16_large_c32"), log=lambda *a: None)
    assert set(res["thresholding"]) == {f"{m}|{w}" for m in ("none", "static", "dynamic") for w in (1, 16)}
    for r in res["thresholding"].values():
        assert r["saturation_interval"][0] <= r["saturation"] <= r["saturation_interval"][1]
        assert r["quality"]["fd_interval"][0] <= r["quality"]["fd"] <= r["quality"]["fd_interval"][1]
    # static thresholding only clips: nothing it returns lies outside [-1, 1], and at w = 16 it clips something
    assert samples["threshold|static|16"].abs().max() <= 1.0
    assert not torch.equal(samples["threshold|static|16"], samples["threshold|none|16"])
    aug = res["augmentation"]
    assert {"base samples|shapes_sr32|0.4", "real low-res|shapes_sr32_noaug|0", "real low-res|shapes_sr32_eps|0",
            "base samples|bilinear upsampling"} <= set(aug)
    for r in aug.values():
        assert r["psnr_to_input_interval"][0] <= r["psnr_to_input"] <= r["psnr_to_input_interval"][1]
    # bilinear upsampling pooled back to 16x16 is close to its input (not equal: bilinear is not the pool's inverse)
    assert aug["real low-res|bilinear upsampling"]["psnr_to_input"] > 25
    assert samples["cascade|base samples|shapes_sr32|0.4"].shape == (8, 3, 32, 32)
    grid = res["grid"]
    assert grid["shapes_base16_small_c16"]["encoder_params"] < grid["shapes_base16_large_c32"]["encoder_params"]
    assert grid["shapes_base16_large_c32"]["caption_encoder"] == "shapes_caption_large"


def test_quick_imagen_flawed_super_resolves_three_flawed_sources():
    from course_lib.tools.experiments import imagen_flawed

    res, samples = imagen_flawed(n=16, steps=4, aug_levels=(0.0, 0.4), log=lambda *a: None)
    sources = list(res["config"]["sources"])
    assert len(sources) == 3 and set(res["rows"]) == {
        f"{s}|{m}" for s in sources for m in ("bilinear upsampling", "shapes_sr32_noaug|0", "shapes_sr32|0",
                                               "shapes_sr32|0.4")}
    assert all(samples[f"flawed|{s}"].shape == (8, 3, 16, 16) for s in sources)
    # the saturated and the washed-out sources come from the same model and noise: they differ only by w and threshold
    assert not torch.equal(samples[f"flawed|{sources[1]}"], samples[f"flawed|{sources[2]}"])


def test_shipped_imagen_results_back_notebook_08s_claims():
    from course_lib import checkpoints, results_path

    r = json.loads(results_path("imagen_table.json").read_text())
    T = r["thresholding"]
    # static clipping at w = 16 saturates more than w = 1 (intervals apart), no thresholding more still
    assert T["none|1"]["saturation_interval"][1] < T["static|16"]["saturation_interval"][0]
    assert T["static|16"]["saturation_interval"][1] < T["none|16"]["saturation_interval"][0]
    # dynamic thresholding washes the black background out here: mean |x| falls with w, below static's
    assert T["dynamic|16"]["mean_abs_interval"][1] < T["dynamic|1"]["mean_abs_interval"][0]
    assert T["dynamic|4"]["mean_abs_interval"][1] < T["static|4"]["mean_abs_interval"][0]
    # the grid's shapes_base16_large_c32 row is the shipped model's own evaluation again (same captions and noise)
    m = checkpoints.manifest()["shapes_base16_large_c32"]["metrics"]
    g = r["grid"]
    assert g["shapes_base16_large_c32"]["caption_following"]["all"] == m["caption_following"]["all"]
    assert abs(g["shapes_base16_large_c32"]["quality"]["fd"] - m["quality"]["fd"]) < 1e-3
    # the UNet's width matters more than the encoder's size here: c16 -> c32 moves caption following more than
    # small -> large does, for either encoder
    for enc in ("small", "large"):
        widen = g[f"shapes_base16_{enc}_c32"]["caption_following"]["all"] - g[f"shapes_base16_{enc}_c16"][
            "caption_following"]["all"]
        for unet in ("c16", "c32"):
            grow = g[f"shapes_base16_large_{unet}"]["caption_following"]["all"] - g[f"shapes_base16_small_{unet}"][
                "caption_following"]["all"]
            assert widen > grow
    # the eps-predicting super-resolution model fails where the v-predicting one works
    A = r["augmentation"]
    assert A["base samples|shapes_sr32|0"]["fd32_interval"][1] < A["base samples|shapes_sr32_eps|0"]["fd32_interval"][0]
    f = json.loads(results_path("imagen_flawed.json").read_text())["rows"]
    # on the weak base's samples, augmentation repairs what the model without it copies
    weak = "weak base (small_c16, w = 3)"
    assert f[f"{weak}|shapes_sr32|0.6"]["fd32_interval"][1] < f[f"{weak}|shapes_sr32_noaug|0"]["fd32_interval"][0]
    assert f[f"{weak}|shapes_sr32|0.6"]["psnr_to_input"] < f[f"{weak}|shapes_sr32_noaug|0"]["psnr_to_input"]


def test_quick_dit_table_trains_the_grid_the_ablation_and_compares_steps_and_the_unet():
    from course_lib.tools.experiments import dit_table

    res, samples = dit_table(steps=20, n=16, sizes=("S",), patch_sizes=(4, 2), ablation_size="S",
                             sampling_steps=(5, 10), match_width=64, match_steps=20, log=lambda *a: None)
    grid = res["grid"]
    assert set(grid) == {"S/4", "S/2"}
    # four times the tokens, about four times the compute; the parameters barely move
    assert grid["S/2"]["tokens"] == 4 * grid["S/4"]["tokens"]
    assert 3.0 < grid["S/2"]["gflops"] / grid["S/4"]["gflops"] < 5.0
    assert abs(grid["S/2"]["params"] - grid["S/4"]["params"]) < 0.1 * grid["S/2"]["params"]
    for r in grid.values():
        assert r["fd_interval"][0] <= r["fd"] <= r["fd_interval"][1]
        assert len(r["curve_steps"]) == len(r["curve_loss"]) > 0
    assert set(res["ablation"]) == {"adaln_zero", "adaln", "cross_attention", "in_context"}
    assert res["ablation"]["adaln_zero"]["fd"] == grid["S/2"]["fd"]  # the same model, measured once
    ab = res["ablation"]
    # the paper's Table 4: in-context adds a token, cross-attention an attention per block; adaLN-Zero's gates cost
    # parameters but almost no compute
    assert ab["in_context"]["gflops"] > ab["adaln_zero"]["gflops"] and ab["cross_attention"]["gflops"] > ab["adaln"]["gflops"]
    assert ab["adaln_zero"]["params"] > ab["adaln"]["params"]
    assert res["correlation"]["paper_pearson_log_gflops_fid"] == pytest.approx(-0.93, abs=0.001)
    assert res["correlation"]["interval"] is None  # two models: no interval
    rows = res["sampling_steps"]["S/2"]
    assert [r["ddim_steps"] for r in rows] == [5, 10]
    assert rows[1]["sampling_gflops"] == pytest.approx(2 * rows[0]["sampling_gflops"])
    assert set(res["versus_unet"]) == {"shapes_ldm32", "shapes_dit", "DiT D64/2, 20 steps"}
    assert samples["S/2"].shape == (8, 3, 32, 32)


def test_shipped_dit_results_back_notebook_09s_claims():
    from course_lib import results_path

    r = json.loads(results_path("dit_table.json").read_text())
    A, G, C, S, V = r["ablation"], r["grid"], r["correlation"], r["sampling_steps"], r["versus_unet"]
    # adaLN-Zero's FD is below every other block's, intervals apart (the paper's Table 4 winner)
    for other in ("adaln", "cross_attention", "in_context"):
        assert A["adaln_zero"]["fd_interval"][1] < A[other]["fd_interval"][0], other
    assert A["adaln_zero"]["fd"] == G["M/2"]["fd"]  # the ablation's adaLN-Zero is the grid's M/2
    # FD falls with log Gflops; the paper's -0.930 lies inside our Fisher interval
    lo, hi = C["interval"]
    assert C["pearson_log_gflops_fd"] < 0 and lo <= C["paper_pearson_log_gflops_fid"] <= hi
    # equal Gflops, unequal FD at this training length: S/1 against M/2
    assert abs(G["S/1"]["gflops"] / G["M/2"]["gflops"] - 1) < 0.05
    assert G["M/2"]["fd_interval"][1] < G["S/1"]["fd_interval"][0]
    # more steps do not make up for a smaller model: S/2 at 250 steps against M/2 at 20, at more sampling compute
    steps = {k: {row["ddim_steps"]: row for row in rows} for k, rows in S.items()}
    assert steps["S/2"][250]["sampling_gflops"] > steps["M/2"][20]["sampling_gflops"]
    assert steps["M/2"][20]["fd_interval"][1] < steps["S/2"][250]["fd_interval"][0]
    # the U-Net of notebook 06 beats a DiT of its Gflops trained as long, intervals apart
    match = next(k for k in V if k.startswith("DiT"))
    assert abs(V[match]["gflops"] / V["shapes_ldm32"]["gflops"] - 1) < 0.05
    assert V["shapes_ldm32"]["guidance_1"]["fd_interval"][1] < V[match]["guidance_1"]["fd_interval"][0]
