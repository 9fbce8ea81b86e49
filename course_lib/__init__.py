"""course_lib: complete, tested implementations behind the diffusion and visual-tokenizer course.

Modules (import what you need; importing the package itself stays cheap):
schedules, diffusion, data, nets, attention, train, checkpoints, metrics, viz, widgets, coursework, device.

Each notebook's pieces side by side (the maths module a topic's equations live in, its slider demos, the checks of
its exercises, its models under ``nets/``): the names differ because the maths modules are named for what they
compute and are shared across notebooks. Each ``demos`` module's ``notebook_demos(...)`` builds its notebook's slider
demos; the notebook shows them and ``./course latency`` measures the same objects, at the budget kind each carries.
Notebook 00 writes its one demo in the open, to show how ``widgets.slider_demo`` works.

========================  ==============================  ================  =====================  ================
notebook                  maths                           demos             coursework (checks)    models (nets/)
========================  ==============================  ================  =====================  ================
00 welcome                schedules, diffusion.q_sample   widgets           coursework.diffusion   (data only)
01 DDIM                   diffusion, schedules            demos.ddim        coursework.diffusion   mlp, unet
02 classifier guidance    guidance                        demos.guidance    coursework.guidance    classifier, unet
03 VQ-VAE + LFQ           quantize                        demos.vq          coursework.quantize    vqvae
04 LPIPS                  perceptual                      demos.lpips       coursework.perceptual  lpips_weights
05 VQGAN                  gan (+ quantize, perceptual)    demos.vqgan       coursework.gan         vqvae, gpt
06 Latent Diffusion       ldm, attention (+ diffusion)    demos.ldm         coursework.ldm         unet, caption
07 ControlNet             controlnet (+ ldm)              demos.controlnet  coursework.controlnet  controlnet, unet
08 Imagen                 imagen (+ diffusion, guidance)  demos.imagen      coursework.imagen      unet, caption
09 DiT                    dit (+ ldm, diffusion)          demos.dit         coursework.dit         dit
10 LDM written by you      ldm, timing (+ diffusion)       demos.pipeline    coursework.pipeline    mini_unet
========================  ==============================  ================  =====================  ================

Around them: ``train`` (the one loop, the recipes' tasks), ``recipes`` (data), ``checkpoints`` (the hashed
manifest), ``metrics`` (FD, precision/recall, PSNR/SSIM and the evaluations), ``tools`` (benchmark, figures,
experiments: not for reading).

Every equation of the reading notes (``seed-reading-notes.md``) and the one function that computes it (the one its
notebook shows with ``course_lib.show``; paper equation numbers first, the notes' in parentheses):

===========================================================  ================================================  ========
equation                                                     function                                          notebook
===========================================================  ================================================  ========
DDIM eq. 1 (1): x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps       diffusion.q_sample                                00, 01
DDIM eq. 7 (2): q_sigma(x_{t-1} | x_t, x0)                   diffusion.q_sigma_posterior                       01
DDIM eq. 10 (3): p_theta^(t), the two cases                  diffusion.ddim_sample                             01
DDIM eq. 12 (4): predicted x0 + direction + noise            diffusion.ddim_update                             01
DDIM eq. 12, predicted x0 f_theta(x_t)                       diffusion.predicted_x0                            01
DDIM eq. 16: sigma_t(eta); Table 1's sigma-hat               diffusion.sigma_eta, diffusion.sigma_hat          01
Guided Diffusion eq. 2: p(x_t | x_t+1, y) ~ p_theta p_phi    guidance.guided_density                           02
Guided Diffusion Algorithm 1 (shifted mean)                  guidance.classifier_guided_mean                   02
Guided Diffusion Algorithm 2 (eps - sqrt(1 - a) s grad)      guidance.classifier_guided_eps                    02
classifier-free guidance eps_u + s (eps_c - eps_u)           guidance.cfg_eps (batched: cfg_eps_fn)            02, 06
VQ-VAE: x -> z_e -> z_q -> x_hat                             nets.VQVAE                                        03
VQ-VAE: z_q = C_k, k = argmin_j ||z_e - C_j||                quantize.nearest_code                             03
VQ-VAE: sg, z_e + sg(z_q - z_e)                              quantize.straight_through                         03
VQ-VAE: L_commit, L_VQ                                       quantize.vq_losses                                03
VQ-VAE: the total L                                          nets.VQVAE.objective                              03
MAGVIT-v2: q = sign(z), index, entropy penalty               quantize.lfq_quantize, quantize.lfq_entropy_loss  03
LPIPS eq. 1: d(x, x0)                                        perceptual.lpips_distance                         04
VQGAN eq. 4: L_VQ(E, G, Z), L_rec = L1 + LPIPS               nets.VQVAE.objective, gan.VQGANTrainer            05
VQGAN eq. 5: L_GAN = log D(x) + log(1 - D(x_hat))            gan.vanilla_d_loss (hinge: gan.hinge_d_loss)      05
VQGAN eq. 6: Q* = argmin max E[L_VQ + lambda L_GAN]          gan.VQGANTrainer.step                             05
VQGAN eq. 7: lambda = ||grad L_rec|| / (||grad L_GAN|| + d)  gan.adaptive_weight_of_norms                      05
LDM eq. 3: Q = W_Q phi(z_t), K = W_K tau(y), V = W_V tau(y)  attention.CrossAttention                          06
LDM eq. 2: L_LDM                                             diffusion.diffusion_loss                          06, 10
LDM: z = s E(x), s = 1 / std(E(x))                           ldm.latent_scale                                  06, 10
the notes' red question: swap Q and K, V                     attention.SwappedCrossAttention                   06
ControlNet eq. 1: zero convolution Z, weight = bias = 0      nets.controlnet.zero_conv                         07
ControlNet eq. 2: y_c = F(x) + Z(F(x + Z(c)); Theta_z2)      nets.ControlNet                                   07
Imagen: dynamic thresholding of x0 (static: clip to [-1,1])  imagen.dynamic_threshold                          08
Imagen: noise-conditioning augmentation at level u           imagen.noise_augment                              08
Imagen / Salimans & Ho: v = sqrt(a) eps - sqrt(1 - a) x0     diffusion.v_target                                08
DiT: patchify, N = (H/p)(W/p) tokens of p p C values         nets.dit.patchify                                 09
DiT / MAE: 2-D sine-cosine position table                    nets.dit.sincos_pos_embed_2d                      09
DiT: adaLN modulate, x (1 + gamma) + beta                    nets.dit.modulate                                 09
DiT: adaLN-Zero x + alpha F(LN(x)(1 + gamma) + beta)         nets.dit.gated_residual                           09
DiT Fig. 8: Pearson r of FID with log Gflops                 dit.pearson                                       09
===========================================================  ================================================  ========

LPIPS' lin / tune / scratch are the three set-ups of ``perceptual.lpips_variant``, trained by ``train.tasks.train_2afc``
(notebook 04); the shipped ``shapes_lpips_lin`` is lin's w_l for ``LPIPS("shapes")``.
"""
__version__ = "0.1.0"

from pathlib import Path as _Path

RESULTS_DIR = _Path(__file__).resolve().parent / "results"


def show(fn) -> None:
    """Print the lines of ``fn`` that compute its equation, without its argument checks (see course_lib.source)."""
    from .source import show as _show  # imports only ast and inspect

    _show(fn)


def results_path(name: str) -> _Path:
    """The path of a precomputed result the notebooks display (``./course experiments`` writes them).

    They ship inside the package, beside the weights, so a notebook finds them wherever it lives: in
    ``notebooks/``, in a student copy under ``student/``, or anywhere else.
    """
    path = RESULTS_DIR / name
    if not path.is_file():
        from .tools.experiments import SWEEPS  # only on this path: it imports the models

        stem = _Path(name).stem
        sweep = next((k for k, (_, res, samples) in SWEEPS.items() if stem in (res, samples)), None)
        how = (f"rebuild it with `./course experiments {sweep}`" if sweep else
               f"no sweep writes it; the results are {sorted(p.name for p in RESULTS_DIR.glob('*.*'))}")
        raise FileNotFoundError(f"results_path: {name!r} is missing from {RESULTS_DIR}; {how} (a fresh checkout "
                                "ships every result: `git checkout -- course_lib/results` restores them)")
    return path
