"""The PNG an image grid is sent as: the pixels tensorboardX and visdom draw, encoded once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from modelviz_testing import decode_png
from tensorboardX.summary import image as tensorboardx_image

from pytest_modelviz.png import grid_png


def test_a_float_grid_has_the_pixels_tensorboardx_draws() -> None:
    grid = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(0))
    grid[:, 0, 0] = torch.tensor([0.0, 1.0, 0.999])
    png = grid_png(grid)
    theirs = tensorboardx_image("t", grid.numpy(), dataformats="CHW").value[0].image
    assert (png.height, png.width) == (theirs.height, theirs.width) == (7, 9)
    assert np.array_equal(decode_png(png.data), decode_png(theirs.encoded_image_string))


def test_grey_is_repeated_to_rgb_uint8_is_kept_and_out_of_range_is_clipped() -> None:
    grey = torch.tensor([[[0.0, 0.5, 1.0]]])
    assert decode_png(grid_png(grey).data).tolist() == [[[0, 0, 0], [127, 127, 127], [255, 255, 255]]]
    as_bytes = torch.tensor([[[3, 200]], [[0, 255]], [[9, 1]]], dtype=torch.uint8)
    assert decode_png(grid_png(as_bytes).data).tolist() == [[[3, 0, 9], [200, 255, 1]]]
    wild = torch.tensor([[[-0.5, 1.5]]] * 3)
    assert decode_png(grid_png(wild).data).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_the_same_pixels_are_encoded_once_and_others_anew() -> None:
    grid = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    first = grid_png(grid)
    assert grid_png(grid.clone()) is first  # a second sink given the same picture
    grid[0, 0, 0] = 1.0 - grid[0, 0, 0]  # the same tensor, changed in place
    changed = grid_png(grid)
    assert changed is not first
    assert np.array_equal(decode_png(changed.data)[0, 0], (grid[:, 0, 0] * 255).to(torch.uint8).numpy())
    # The same bytes in another shape are another picture.
    wide, tall = grid_png(torch.zeros(3, 4, 6)), grid_png(torch.zeros(3, 6, 4))
    assert (wide.height, wide.width, tall.height, tall.width) == (4, 6, 6, 4)
    assert decode_png(tall.data).shape == (6, 4, 3)


@pytest.mark.parametrize("shape", [(4, 5, 5), (5, 5), (1, 3, 5, 5)])
def test_a_picture_that_is_not_c_h_w_is_refused_naming_its_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=rf"1 or 3 channels, got shape \({', '.join(map(str, shape))}\)"):
        grid_png(torch.zeros(shape))
