import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course_lib import viz
from course_lib.data import ring_mixture


def test_image_grid_layout_and_range():
    imgs = torch.linspace(-1, 1, 5 * 3 * 4 * 4).reshape(5, 3, 4, 4)
    grid = viz.image_grid(imgs, nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert grid.min() >= 0 and grid.max() <= 1
    np.testing.assert_allclose(grid[1:5, 1:5], viz.to_image(imgs[0]), atol=1e-6)
    np.testing.assert_allclose(grid[6:10, 1:5], viz.to_image(imgs[3]), atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        viz.image_grid(torch.zeros(3, 4, 4))


def test_to_image_maps_minus_one_to_zero():
    img = viz.to_image(torch.stack([torch.full((2, 2), -1.0), torch.zeros(2, 2), torch.ones(2, 2)]))
    assert img.shape == (2, 2, 3)
    np.testing.assert_allclose(img[0, 0], [0.0, 0.5, 1.0])


def test_scatter_and_trajectories_draw():
    fig, (a, b) = plt.subplots(1, 2)
    x = torch.randn(50, 2)
    sc = viz.scatter_2d(x, a, labels=torch.arange(50) % 8, mixture=ring_mixture(), alpha_bar=0.5)
    np.testing.assert_allclose(sc.get_offsets(), x.numpy(), atol=1e-6)
    viz.plot_trajectories(torch.randn(11, 20, 2), b, max_paths=5)
    assert len(b.lines) == 5
    with pytest.raises(ValueError, match="traj"):
        viz.plot_trajectories(torch.randn(11, 20, 3), b)
    plt.close(fig)


def test_term_colours_are_distinct():
    keys = ["predicted_x0", "direction", "noise", "guidance"]
    assert len({viz.TERM_COLORS[k] for k in keys}) == len(keys)


def test_attention_overlay_upsamples_each_cell_to_a_block_over_the_image():
    import matplotlib.pyplot as plt

    from course_lib.viz import attention_overlay

    fig, ax = plt.subplots()
    image = torch.zeros(3, 32, 32)
    maps = torch.zeros(8, 8)
    maps[0, 0] = 1.0
    attention_overlay(ax, image, maps, title="'red'")
    up = ax.images[1].get_array()
    assert up.shape == (32, 32) and float(up[:4, :4].min()) == 1.0 and float(up[4:, :].max()) == 0.0  # 4x4 blocks
    assert ax.get_title() == "'red'"
    with pytest.raises(ValueError, match="attention: expected one map"):
        attention_overlay(ax, image, torch.zeros(2, 8, 8))
    plt.close(fig)


def test_compare_samples_puts_each_caption_on_one_row_and_refuses_a_short_column():
    a, b = torch.rand(6, 3, 8, 8) * 2 - 1, torch.rand(6, 3, 8, 8) * 2 - 1
    fig = viz.compare_samples({"left": a, "right": b}, ["one", "two", "three"], per_caption=2)
    axes = fig.axes
    assert len(axes) == 6 and [ax.get_title() for ax in axes[:2]] == ["left: one", "right: one"]
    assert axes[3].get_title() == "right: two"
    plt.close(fig)
    with pytest.raises(ValueError, match=r"columns\['right'\]: expected 6 images"):
        viz.compare_samples({"left": a, "right": b[:5]}, ["one", "two", "three"], per_caption=2)


def test_interval_errorbar_draws_each_interval_from_its_ends():
    fig, ax = plt.subplots()
    bars = viz.interval_errorbar(ax, [1, 2], [5.0, 3.0], [[4.0, 7.0], [2.5, 3.0]], capsize=2)
    segments = bars.lines[2][0].get_segments()  # one vertical segment per point, from low to high
    assert np.allclose([seg[:, 1] for seg in segments], [[4.0, 7.0], [2.5, 3.0]])
    with pytest.raises(ValueError, match=r"intervals: expected one \[low, high\] per value \(2 x, 2 values\), got 1"):
        viz.interval_errorbar(ax, [1, 2], [5.0, 3.0], [[4.0, 7.0]])
    plt.close(fig)
