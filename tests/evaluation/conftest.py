"""One torch thread for this area's tests: the tiny models are too small to gain from more,
and on a shared 2-core machine extra threads only contend."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
