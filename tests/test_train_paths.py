"""Training paths other than the default, each trained briefly on the CPU: torch.compile and a data set kept on the
host. (fp16 with a GradScaler is trained, checkpointed and resumed in test_train.py.)"""

from __future__ import annotations

import pytest
import torch
from test_train_step import assert_same_weights, by_hand_config, make_trainer, step_by_hand

from dcganlib import checkpoint


@pytest.fixture
def compile_calls(monkeypatch) -> list[dict]:
    """torch.compile with the eager-autograd backend: TorchDynamo traces the networks as on a GPU, but no C++ is
    compiled (inductor on this CPU takes ~2 minutes for one step). Records each call's module and mode."""
    calls, real_compile = [], torch.compile

    def compile_(model, *, mode=None, **kwargs):
        calls.append({"model": model, "mode": mode})
        return real_compile(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


def test_compiled_step_equals_the_step_by_hand_and_trains_the_shared_weights(tmp_path, compile_calls):
    trainer = make_trainer(tmp_path, by_hand_config(compile=True, compile_mode="reduce-overhead"))
    assert [(call["model"], call["mode"]) for call in compile_calls] == [
        (trainer.generator, "reduce-overhead"), (trainer.discriminator, "reduce-overhead")]
    assert trainer._step.forwards[0] is not trainer.generator
    batches = trainer.loader.epoch(0)
    for _ in range(2):
        real = next(batches)
        expected = step_by_hand(trainer, real)
        stats = trainer.train_step(real)
        torch.testing.assert_close(stats[:2], torch.stack([expected["loss_d"], expected["loss_g"]]))
        # The compiled wrappers share the networks' weights: the plain modules hold the trained values.
        assert_same_weights(trainer.generator, expected["generator"])
        assert_same_weights(trainer.discriminator, expected["discriminator"])
    saved = checkpoint.load_checkpoint(trainer.save_checkpoint())
    assert not any("_orig_mod" in key for key in (*saved["generator"], *saved["discriminator"]))


def test_without_compile_the_networks_run_as_they_are(tmp_path, compile_calls):
    trainer = make_trainer(tmp_path, by_hand_config())
    assert compile_calls == []
    assert trainer._step.forwards[:2] == (trainer.generator, trainer.discriminator)


def test_a_host_kept_data_set_trains_exactly_like_a_resident_one(tmp_path):
    # On a CPU both keep the images in host memory (data.placed): the same batches make the same run.
    resident = make_trainer(tmp_path / "resident", by_hand_config(resident_data=True))
    host = make_trainer(tmp_path / "host", by_hand_config(resident_data=False))
    assert host.loader.device == torch.device("cpu")
    for real_a, real_b in zip(resident.loader.epoch(0), host.loader.epoch(0), strict=True):
        assert torch.equal(real_a, real_b)
    host.fit()
    resident.fit()
    assert host.step == resident.step == len(host.loader)
    assert_same_weights(host.generator, resident.generator)
    assert_same_weights(host.discriminator, resident.discriminator)
