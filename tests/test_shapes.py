import pytest
import torch

from course_lib.data import (CAPTION_LENGTH, COLOURS, SHAPES, VOCAB, decode_tokens, encode_caption,
                             generate_shapes, render_shapes)
from course_lib.data.shapes import COLUMNS, ROWS, SIZES


@pytest.mark.parametrize("size", [16, 32])
def test_batch_shapes_ranges_and_determinism(size):
    a = generate_shapes(64, size, (1, 2), seed=5)
    b = generate_shapes(64, size, (1, 2), seed=5)
    c = generate_shapes(64, size, (1, 2), seed=6)
    assert a.images.shape == (64, 3, size, size) and a.masks.shape == (64, size, size)
    assert a.tokens.shape == (64, CAPTION_LENGTH)
    assert a.images.min() >= -1 and a.images.max() <= 1
    assert torch.equal(a.images, b.images) and torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.images, c.images)


def test_captions_describe_the_attributes():
    b = generate_shapes(200, 16, (1, 2), seed=0)
    for i, cap in enumerate(b.captions):
        parts = cap.split(" and ")
        assert len(parts) == int(b.num_objects[i])
        for j, part in enumerate(parts):
            size, colour, shape, row, col = part.split()
            at = {k: int(v[i, j]) for k, v in b.attributes.items()}
            assert (size, colour, shape, row, col) == (
                SIZES[at["size"]], list(COLOURS)[at["colour"]], SHAPES[at["shape"]], ROWS[at["row"]],
                COLUMNS[at["column"]])
        assert SHAPES[int(b.labels[i])] == parts[0].split()[2]


def test_masks_carry_each_objects_colour_and_sit_in_its_cell():
    b = generate_shapes(300, 32, 1, seed=1)
    palette = torch.tensor(list(COLOURS.values())) * 2 - 1
    for i in range(300):
        m = b.masks[i] == 1
        assert m.sum() >= 4  # every shape is visible
        colour = palette[b.attributes["colour"][i, 0]]
        # the interior pixels (full coverage) carry exactly the object's colour
        assert ((b.images[i][:, m] - colour[:, None]).abs().max(0).values < 1e-5).sum() >= 4
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert int(ys.float().mean() // (32 / 3)) == int(b.attributes["row"][i, 0])
        assert int(xs.float().mean() // (32 / 3)) == int(b.attributes["column"][i, 0])
        assert bool((b.images[i][:, ~m.bool()] <= palette.max()).all())


def test_two_objects_never_share_a_cell_and_large_is_larger():
    b = generate_shapes(2000, 32, 2, seed=2)
    cells = b.attributes["row"] * 3 + b.attributes["column"]
    assert bool((cells[:, 0] != cells[:, 1]).all())
    area = (b.masks == 1).flatten(1).sum(1).float()
    small = area[b.attributes["size"][:, 0] == 0].mean()
    large = area[b.attributes["size"][:, 0] == 1].mean()
    assert large > 1.8 * small


def test_every_attribute_value_occurs():
    b = generate_shapes(5000, 16, (1, 2), seed=3)
    for key, n in [("shape", 4), ("colour", 6), ("row", 3), ("column", 3), ("size", 2)]:
        assert set(b.attributes[key][:, 0].tolist()) == set(range(n))
    assert set(b.num_objects.tolist()) == {1, 2}
    assert (b.attributes["shape"][b.num_objects == 1, 1] == -1).all()


def test_render_chosen_content_and_shapes_differ():
    """Same colour, size and place: the four shapes give four clearly different images."""
    attrs = {"shape": torch.arange(4), "colour": torch.zeros(4), "row": torch.ones(4),
             "column": torch.ones(4), "size": torch.ones(4)}
    b = render_shapes(attrs, 32)
    assert b.captions == [f"large red {s} middle center" for s in SHAPES]
    for i in range(4):
        for j in range(i + 1, 4):
            assert (b.images[i] - b.images[j]).abs().sum() > 10
    # the generator and the renderer agree
    g = generate_shapes(8, 16, (1, 2), seed=4)
    r = render_shapes(g.attributes, 16)  # no jitter: pixels differ slightly, content does not
    assert torch.equal(r.tokens, g.tokens) and torch.equal(r.labels, g.labels)
    with pytest.raises(ValueError, match="colour"):
        render_shapes({**attrs, "colour": torch.full((4,), 9)}, 16)


def test_caption_round_trip_and_bad_words():
    t = encode_caption("large red circle top left and small blue cross bottom right")
    assert t.shape == (CAPTION_LENGTH,)
    assert decode_tokens(t) == ["large red circle top left and small blue cross bottom right"]
    with pytest.raises(ValueError, match="purple"):
        encode_caption("large purple circle top left")
    assert VOCAB[0] == "<pad>"


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_objects"):
        generate_shapes(4, 16, 3)
    with pytest.raises(ValueError, match="image_size"):
        generate_shapes(4, 4)
    with pytest.raises(TypeError, match="n"):
        generate_shapes(4.0)
