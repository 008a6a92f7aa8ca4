"""Tiny-run helpers: a config on tiny-llama with a few demo examples, and a report recorder."""

import pytest

from jola_ray.train import RunConfig

TINY = {
    "model": "tiny-llama",
    "task": "demo_vowel",
    "train_size": 8,
    "dev_size": 4,
    "test_size": 4,
    "batch_size": 4,
    "eval_batch_size": 8,
    "epochs": 2,
    "max_new_tokens": 3,
    "lr": 5e-3,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny matrices: one intra-op thread is many times faster than two on a busy 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(name="run", **overrides):
        return RunConfig.from_dict({**TINY, "output_dir": str(tmp_path / name), **overrides})

    return make


class Recorder:
    """A report callable that keeps (metrics, checkpoint_dir, files in that dir) per call."""

    def __init__(self, fail_after: int | None = None):
        self.calls = []
        self.fail_after = fail_after

    def __call__(self, metrics, checkpoint_dir):
        import os

        self.calls.append((dict(metrics), checkpoint_dir, sorted(os.listdir(checkpoint_dir))))
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated preemption")


@pytest.fixture
def recorder():
    return Recorder


def trainer_args(tmp_path, **overrides):
    """A TRL ``SFTConfig`` for driving a trainer by hand in a test: CPU, fp32, no reporting,
    no checkpoints, no progress bars."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        report_to="none",
        activation_checkpointing=False,
        save_strategy="no",
        disable_tqdm=True,
        **overrides,
    )
