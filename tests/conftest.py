
import pytest
import torch

# One intra-op thread: the networks here are small, and on a shared 2-core machine two
# threads were measured 4-6x slower than one (spin-waiting OpenMP workers).
torch.set_num_threads(1)


@pytest.fixture(params=[0, 1, 2])
def seed(request):
    return request.param
