import torch
from PIL import Image

from dmlbench.data import transforms
from dmlbench.data.transforms import InkMap, TransformSpec


def test_ink_map_ignores_colour_and_polarity():
    # A 4×4 image: background colour b, one "ink" pixel of colour f.
    def image(b, f):
        x = torch.tensor(b, dtype=torch.float32).view(3, 1, 1).repeat(1, 4, 4)
        x[:, 1, 2] = torch.tensor(f)
        return x

    dark_on_light = InkMap()(image([0.9, 0.8, 1.0], [0.1, 0.2, 0.0]))
    light_on_dark = InkMap()(image([0.0, 0.1, 0.2], [1.0, 0.6, 0.8]))
    expected = torch.zeros(3, 4, 4)
    expected[:, 1, 2] = 1.0
    assert torch.allclose(dark_on_light, expected)
    assert torch.allclose(light_on_dark, expected)


def test_blank_image_stays_blank():
    assert torch.count_nonzero(InkMap()(torch.full((3, 5, 5), 0.3))) == 0


def test_sizes_and_normalisation_follow_the_backbone():
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    spec = TransformSpec(flip=False, resize_ratio=1.0, ink=True)
    x = transforms.test_transform(spec, 48, (0.5,) * 3, (0.5,) * 3)(image)
    assert x.shape == (3, 48, 48)
    assert torch.all(x == -1.0)  # no ink anywhere → 0, normalised to -1
    y = transforms.train_transform(TransformSpec(), 32, (0.5,) * 3, (0.25,) * 3)(image)
    assert y.shape == (3, 32, 32) and torch.allclose(y, torch.full_like(y, 2.0))
