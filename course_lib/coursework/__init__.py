"""Coursework: the checks under the exercise cells, the student copies, and the grader.

- :mod:`.core`: cases, the comparison with the reference, the library made unavailable while the learner's
  function runs, one verdict line printed once.
- one module per notebook topic with its checks and their mistake catalogues: :mod:`.diffusion` (00, 01),
  :mod:`.guidance` (02), :mod:`.quantize` (03), :mod:`.perceptual` (04), :mod:`.gan` (05), :mod:`.ldm` (06),
  :mod:`.controlnet` (07), :mod:`.imagen` (08), :mod:`.dit` (09), :mod:`.pipeline` (10: the learner's pipeline,
  whose later stages run the learner's function once its check passed, :func:`.pipeline.yours_or_library`).
- :mod:`.student`: ``./course student`` (solutions, revealing cells and stored verdicts removed).
- :mod:`.grade`: ``./course check`` (one row per exercise, a total, ``student/report.json``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core import (Case, CourseworkError, LearnerCodeRaised, LibraryCalled, NotStarted, Verdict, check_function,
                   library_unavailable)
from .controlnet import (check_controlled_forward, check_first_step_prediction, check_strength_experiment,
                         check_zero_conv)
from .dit import check_correlation_experiment, check_gated_residual, check_patch_prediction, check_patchify
from .diffusion import (check_alphas_cumprod, check_consistency_prediction, check_ddim_step, check_predicted_x0,
                        check_q_sample_at, check_sigma_eta, check_sigma_hat_experiment)
from .gan import check_adaptive_weight, check_clamp_experiment, check_discriminator_prediction, check_hinge_d_loss
from .guidance import (check_algorithms_experiment, check_cfg_eps, check_classifier_guided_eps,
                       check_classifier_guided_mean, check_sharpening_prediction)
from .imagen import check_drift_experiment, check_dynamic_threshold, check_imagen_guidance, check_static_prediction
from .ldm import check_cross_attention, check_latent_round_trip, check_steps_experiment, check_swap_prediction
from .pipeline import (check_denoiser_forward, check_evaluation_experiment, check_latent_scale, check_ldm_loss,
                       check_median_time, check_sampler, check_train_loop, yours_or_library)
from .perceptual import (check_2afc_experiment, check_lpips_distance, check_normalize_channels,
                         check_shift_noise_prediction)
from .quantize import (check_lfq_index, check_restarts_experiment, check_straight_through, check_usage_prediction,
                       check_vq_losses)
from .student import StudentCopyEdited, make_student_notebook, strip_solutions

__all__ = ["Case", "CourseworkError", "NotStarted", "LearnerCodeRaised", "LibraryCalled", "Verdict",
           "check_function", "library_unavailable", "check_alphas_cumprod", "check_q_sample_at",
           "check_predicted_x0", "check_sigma_eta", "check_ddim_step", "check_classifier_guided_mean",
           "check_classifier_guided_eps", "check_cfg_eps", "check_straight_through", "check_vq_losses",
           "check_lfq_index", "check_normalize_channels", "check_lpips_distance", "check_adaptive_weight",
           "check_hinge_d_loss", "check_cross_attention", "check_latent_round_trip",
           "check_consistency_prediction", "check_sigma_hat_experiment", "check_sharpening_prediction",
           "check_algorithms_experiment", "check_usage_prediction", "check_restarts_experiment",
           "check_shift_noise_prediction", "check_2afc_experiment", "check_discriminator_prediction",
           "check_clamp_experiment", "check_swap_prediction", "check_steps_experiment", "check_zero_conv",
           "check_controlled_forward", "check_first_step_prediction", "check_strength_experiment",
           "check_dynamic_threshold", "check_imagen_guidance", "check_static_prediction", "check_drift_experiment",
           "check_patchify", "check_gated_residual", "check_patch_prediction", "check_correlation_experiment",
           "check_latent_scale", "check_ldm_loss", "check_denoiser_forward", "check_train_loop", "check_sampler",
           "check_evaluation_experiment", "check_median_time", "yours_or_library",
           "make_student_notebook", "strip_solutions", "main", "EXERCISES", "WRITE_THE_FUNCTION"]

# exercise -> its check; the grader names rows by this table
WRITE_THE_FUNCTION = {  # the learner writes a function; its check switches the library's version off
    "0.1": check_alphas_cumprod, "0.2": check_q_sample_at, "1.1": check_predicted_x0, "1.2": check_sigma_eta,
    "1.3": check_ddim_step, "2.1": check_classifier_guided_mean, "2.2": check_classifier_guided_eps,
    "2.3": check_cfg_eps, "3.1": check_straight_through, "3.2": check_vq_losses, "3.3": check_lfq_index,
    "4.1": check_normalize_channels, "4.2": check_lpips_distance, "5.1": check_adaptive_weight,
    "5.2": check_hinge_d_loss, "6.1": check_cross_attention, "6.2": check_latent_round_trip,
    "7.1": check_zero_conv, "7.2": check_controlled_forward, "8.1": check_dynamic_threshold,
    "8.2": check_imagen_guidance, "9.1": check_patchify, "9.2": check_gated_residual,
    "10.1": check_latent_scale, "10.2": check_ldm_loss, "10.3": check_denoiser_forward, "10.4": check_train_loop,
    "10.5": check_sampler, "10.7": check_median_time}
THINK = {  # N.0: predict, then run (placed before its experiment); the last: a small experiment, checked numerically
    "1.0": check_consistency_prediction, "1.4": check_sigma_hat_experiment,
    "2.0": check_sharpening_prediction, "2.4": check_algorithms_experiment,
    "3.0": check_usage_prediction, "3.4": check_restarts_experiment,
    "4.0": check_shift_noise_prediction, "4.3": check_2afc_experiment,
    "5.0": check_discriminator_prediction, "5.3": check_clamp_experiment,
    "6.0": check_swap_prediction, "6.3": check_steps_experiment,
    "7.0": check_first_step_prediction, "7.3": check_strength_experiment,
    "8.0": check_static_prediction, "8.3": check_drift_experiment,
    "9.0": check_patch_prediction, "9.3": check_correlation_experiment,
    "10.6": check_evaluation_experiment}
EXERCISES = {**WRITE_THE_FUNCTION, **THINK}

ROOT = Path(__file__).resolve().parent.parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_lib.coursework")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write student copies of the notebooks, solutions removed")
    s.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    s.add_argument("--out", type=Path, default=ROOT / "student", help="default: student/")
    s.add_argument("--force", action="store_true",
                   help="replace copies that hold your work (each old copy is kept as NAME.ipynb.bak-DATE-TIME)")
    c = sub.add_parser("check", help="execute student copies and grade every exercise")
    c.add_argument("notebooks", nargs="*", type=Path, help="default: every student/*.ipynb")
    c.add_argument("--report", type=Path, default=None, help="JSON report (default: report.json beside the copies)")
    a = p.parse_args(argv)
    if a.cmd == "student":
        nbs = [n if Path(n).is_file() else ROOT / "notebooks" / Path(n).name for n in a.notebooks] or sorted(
            (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        missing = [str(n) for n in nbs if not Path(n).is_file()]
        if missing:
            print(f"course student: notebooks: expected instructor notebooks (notebooks/NN_*.ipynb), not found: "
                  f"{', '.join(missing)}", file=sys.stderr)
            return 2
        kept = 0
        for nb in nbs:
            try:
                n = make_student_notebook(nb, a.out / nb.name, force=a.force)
                print(f"{a.out / nb.name}: {n} exercise(s)")
            except StudentCopyEdited as exc:
                kept += 1
                print(f"kept {exc}", file=sys.stderr)
        return 1 if kept else 0
    from .grade import format_report, grade

    nbs = a.notebooks or sorted((ROOT / "student").glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        print("course check: no student copies found; run `./course student` first", file=sys.stderr)
        return 2
    missing = [str(n) for n in nbs if not Path(n).is_file()]
    if missing:
        print(f"course check: notebooks: expected student copies (.ipynb files), not found: {', '.join(missing)}",
              file=sys.stderr)
        return 2
    report = a.report or Path(nbs[0]).parent / "report.json"
    reports, summary = grade(nbs, report)
    print(format_report(reports, summary))
    print(f"report: {report}")
    ok = summary["passed"] == summary["total"] and not summary["other_failing_cells"]
    return 0 if ok else 1
