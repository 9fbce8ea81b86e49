"""course_lib.bench: its pieces on small inputs (the full command takes minutes and runs by hand)."""
import pytest

from course_lib.tools import bench


def test_our_ddim_loop_matches_diffusers_on_the_shipped_model():
    r = bench.ddim_against_diffusers(n=2, steps=5, repeats=1)
    if "skipped" in r:
        pytest.skip(r["skipped"])
    assert r["max_abs_diff"] < 1e-4 and r["ours_s"] > 0 and r["diffusers_s"] > 0


def test_markdown_table_and_readme_markers(tmp_path):
    r = {"date": "2026-11-29", "machine": "x86_64, 2 threads", "repeats": 3,
         "notebooks": {"00_welcome": 7.0, "01_ddim": 9.5},
         "import": {"course_lib": {"torch_s": 2.1, "beyond_torch_s": 0.3}},
         "demos": {"01 forward": {"cold": (30, 45), "cached": (20, 25), "budget": "analytic"},
                   "02 shapes guidance (images)": {"cold": (120, 180), "asked": (700, 790), "cached": (14, 15),
                                                   "previews": 1.0, "budget": "images"},
                   "01 sampling S>=100 (sampler)": {"cold": (140, 680), "cached": (11, 11), "budget": "sampler"}},
         "ddim": {"num_images": 64, "ancestral": {"nfe": 1000, "seconds": 40.0, "fd": 1.5},
                  "ddim10": {"nfe": 10, "seconds": 0.5, "fd": 3.0, "speedup": 80.0, "fd_ratio": 2.0}},
         "diffusers": {"skipped": "diffusers is not installed"},
         "pixel_latent": {"shapes_ldm32": {"skipped": "shapes_ldm32 is not shipped"}}}
    md = bench.markdown(r)
    assert "| the whole course (sum) | 16.5 s | < 600 s |" in md
    # analytic demos 50 ms, image demos 300 ms to the first picture (here a preview, the asked one after), samplers 1 s
    assert "| slider `01 forward`: cold median / p95, cached median / p95 | 30 / 45 ms, 20 / 25 ms | p95 ≤ 50 ms |" in md
    assert ("| slider `02 shapes guidance (images)`: cold (first picture) median / p95, asked picture median / p95, "
            "cached median / p95 | 120 / 180 ms (a preview on 100% of new settings), 700 / 790 ms, 14 / 15 ms "
            "| p95 ≤ 300 ms |") in md
    assert "680 ms, 11 / 11 ms | p95 ≤ 1000 ms |" in md
    assert "80.0x" in md and "diffusers is not installed" in md and "not shipped" in md
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nold table\n<!-- bench:end -->\nrest\n")
    assert bench.update_readme(md, readme)
    text = readme.read_text()
    assert "old table" not in text and md in text and text.endswith("<!-- bench:end -->\nrest\n")
    (tmp_path / "plain.md").write_text("no markers")
    assert not bench.update_readme(md, tmp_path / "plain.md")


def test_over_budget_names_each_line_over_its_budget_and_nothing_else():
    r = {"date": "2026-12-01", "machine": "x86_64, 2 threads", "repeats": 3,
         "notebooks": {"00_welcome": 7.0, "01_ddim": 61.0},
         "import": {"course_lib": {"torch_s": 2.1, "beyond_torch_s": 0.3}},
         "demos": {"01 forward": {"cold": (30, 51), "cached": (20, 25), "budget": "analytic"},
                   "02 shapes guidance (images)": {"cold": (250, 301), "cached": (40, 50), "budget": "images"},
                   "01 sampling S>=100 (sampler)": {"cold": (140, 1000), "cached": (11, 11), "budget": "sampler"}}}
    over = bench.over_budget(r)
    assert over == ["notebook 01_ddim: 61.0 s, budget < 60 s", "slider 01 forward (cold): p95 51 ms, budget <= 50 ms",
                    "slider 02 shapes guidance (images) (cold): p95 301 ms, budget <= 300 ms"]
    assert "Over budget: notebook 01_ddim" in bench.markdown(r)
    r["notebooks"]["01_ddim"], r["demos"]["01 forward"]["cold"] = 9.0, (30, 50)
    r["demos"]["02 shapes guidance (images)"]["cold"] = (250, 300)  # at the budget is within it
    assert bench.over_budget(r) == [] and "Every line with a budget is within it." in bench.markdown(r)


def test_demo_budgets_come_from_the_kind_each_notebook_gives_its_demo():
    assert bench.demo_budget_ms("analytic") == 50
    assert bench.demo_budget_ms("images") == 300 and bench.demo_budget_ms("sampler") == 1000
    with pytest.raises(ValueError, match="kind: expected one of"):
        bench.demo_budget_ms("(images)")
    from course_lib.demos import ddim, guidance

    measured = {**ddim.notebook_demos().measured, **guidance.notebook_demos().measured}
    assert measured["01 forward"].budget == "analytic"
    assert measured["01 sampling S>=100 (sampler)"].budget == "sampler"
    assert measured["02 shapes guidance (images)"].budget == "images"




def test_distributed_step_time_runs_both_ways_and_reports_the_ratio():
    r = bench.distributed_step_time(name="shapes_noisy_classifier16", steps=4, repeats=1)
    assert "skipped" not in r, r.get("skipped")
    one, two = r["one_process"]["s_per_step"], r["two_processes"]["s_per_step"]
    assert one > 0 and two > 0 and r["speedup_two_over_one"] == round(one / two, 2)
    md = bench.markdown({"date": "d", "machine": "m", "repeats": 1, "distributed": r})
    assert "one process vs two gloo processes" in md and f"{r['speedup_two_over_one']}x" in md
    failed = bench.markdown({"date": "d", "machine": "m", "repeats": 1,
                             "distributed": {"skipped": "two_processes failed: boom"}})
    assert "| two-process training step | two_processes failed: boom |" in failed
