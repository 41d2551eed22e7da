"""Devices: which device is picked, which precision each gets, and errors that say what to do."""

import pytest
import torch

from dcganlib import devices
from dcganlib.devices import DeviceUnavailableError, autocast_dtype, device_report, pick_device

COLAB_HINT = "Runtime ▸ Change runtime type ▸ T4 GPU"


def fake_cuda(monkeypatch, capability=(7, 5), name="Tesla T4", count=1, bf16_claim=True):
    """Pretend torch sees `count` GPUs of `capability`; `bf16_claim` is what is_bf16_supported says."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_claim)


def no_gpu(monkeypatch, mps=False):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


# is_bf16_supported is made to claim the opposite of the right answer: the choice must not depend on it
# (a T4 says True through emulation, which is slow).
@pytest.mark.parametrize(("capability", "bf16_claim", "expected"), [
    ((7, 5), True, torch.float16),  # T4
    ((7, 0), True, torch.float16),  # V100
    ((8, 0), False, torch.bfloat16),  # A100
    ((9, 0), False, torch.bfloat16),  # H100
])
def test_auto_precision_on_cuda_follows_compute_capability(monkeypatch, capability, bf16_claim, expected):
    fake_cuda(monkeypatch, capability=capability, bf16_claim=bf16_claim)
    assert autocast_dtype("auto", torch.device("cuda")) == expected


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_explicit_precision_is_kept_on_every_device(device):
    device = torch.device(device)
    assert autocast_dtype("fp32", device) is None
    assert autocast_dtype("bf16", device) == torch.bfloat16
    assert autocast_dtype("fp16", device) == torch.float16


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype("auto", torch.device("cpu")) == expected


def test_native_bf16_means_avx512_bf16_or_amx(monkeypatch):
    for avx512_bf16, amx, native in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda value=avx512_bf16: value)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=amx: value)
        assert devices.cpu_has_native_bf16() is native


def test_cuda_is_picked_first(monkeypatch):
    fake_cuda(monkeypatch)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_apple_gpu_is_picked_without_cuda_and_runs_fp32(monkeypatch):
    no_gpu(monkeypatch, mps=True)
    device = pick_device()
    assert device == torch.device("mps")
    assert autocast_dtype("auto", device) is None


def test_cpu_is_picked_without_any_gpu(monkeypatch):
    no_gpu(monkeypatch)
    assert pick_device() == torch.device("cpu")


def test_valid_explicit_devices(monkeypatch):
    fake_cuda(monkeypatch, count=2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device(torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert pick_device("mps") == torch.device("mps")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CUDA", "cuda:", "tpu", "cpu:1", ""])
def test_unknown_device_lists_the_valid_forms(device):
    with pytest.raises(DeviceUnavailableError, match=r"unknown device .*cpu, cuda, cuda:N .* or mps"):
        pick_device(device)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_a_gpu_says_how_to_get_one(monkeypatch, device):
    no_gpu(monkeypatch)
    with pytest.raises(DeviceUnavailableError) as error:
        pick_device(device)
    message = str(error.value)
    assert "torch sees no GPU" in message and "drop --device to use the CPU" in message and COLAB_HINT in message


def test_cuda_index_out_of_range(monkeypatch):
    fake_cuda(monkeypatch, count=1)
    with pytest.raises(DeviceUnavailableError, match=r"'cuda:1'.*only 1 GPU\(s\) \(cuda:0 to cuda:0\)"):
        pick_device("cuda:1")


def test_mps_without_an_apple_gpu(monkeypatch):
    no_gpu(monkeypatch)
    with pytest.raises(DeviceUnavailableError, match=r"'mps'.*no Apple GPU \(MPS\).*drop --device"):
        pick_device("mps")


def test_device_unavailable_is_a_runtime_error():
    assert issubclass(DeviceUnavailableError, RuntimeError)


@pytest.mark.parametrize(("capability", "name", "expected"), [
    ((7, 5), "Tesla T4", "GPU: Tesla T4 (compute capability 7.5): fp16 autocast with a GradScaler"),
    ((8, 0), "NVIDIA A100-SXM4-40GB", "GPU: NVIDIA A100-SXM4-40GB (compute capability 8.0): bf16 autocast"),
])
def test_report_on_cuda_names_gpu_capability_and_precision(monkeypatch, capability, name, expected):
    fake_cuda(monkeypatch, capability=capability, name=name, bf16_claim=capability < (8, 0))
    assert device_report(torch.device("cuda")) == expected
    assert device_report() == expected


def test_report_on_mps(monkeypatch):
    no_gpu(monkeypatch, mps=True)
    assert device_report() == "Apple GPU (MPS): fp32"


def test_report_on_cpu_warns_and_says_how_to_attach_a_gpu(monkeypatch):
    no_gpu(monkeypatch)
    report = device_report()
    assert report == device_report("cpu")
    assert report.startswith("No GPU attached") and len(report.splitlines()) == 2
    assert f"on Colab choose {COLAB_HINT}, then re-run from the top" in report
    assert "runs on the CPU" in report and "many times slower" in report
