import os

import pytest
import torch

# Two cores on CI: keep intra-op threads modest so parallel BLAS does not thrash.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(params=[0, 1, 2])
def seed(request):
    return request.param
