"""The backend switch: environment variable, context manager, fallback."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import dropkit
from dropkit import kernels


class _RecordingBackend:
    """A backend that delegates to the reference and records its calls."""

    name = "recording"

    grouped_step_ops: frozenset[str] = frozenset()

    def __init__(self, supported_dtypes: tuple[torch.dtype, ...]) -> None:
        self.calls: list[str] = []
        self.supported_dtypes = supported_dtypes
        self._reference = kernels.reference.ReferenceBackend()

    def supports(self, spec, x: torch.Tensor) -> bool:
        return spec.name != UNSUPPORTED.name and x.dtype in self.supported_dtypes

    def run(self, spec, x, draw, out=None, epilogue=None):
        self.calls.append(spec.name)
        return self._reference.run(spec, x, draw, out, epilogue)


# An op the recording backend does not run.
UNSUPPORTED = dataclasses.replace(kernels.SPECS["gaussian_dropout"], name="unsupported")


@pytest.fixture
def recording():
    backend = _RecordingBackend((torch.float32,))
    kernels.register_backend(backend)
    yield backend
    kernels._BACKENDS.pop(backend.name)


def test_default_is_auto_and_reference_on_cpu(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    assert kernels.current_backend_name() == "auto"
    assert (
        kernels.backend_for(kernels.SPECS["dropout"], torch.ones(1)).name
        in kernels.available_backends()
    )


def test_context_manager_forces_and_restores(recording):
    x = torch.randn(10)
    with kernels.use_backend("recording"):
        y = dropkit.functional.dropout(x, 0.5, seed=1)
        assert kernels.current_backend_name() == "recording"
    assert recording.calls == ["dropout"]
    assert kernels.current_backend_name() in ("auto", "reference")
    assert torch.equal(y, dropkit.functional.dropout(x, 0.5, seed=1))


def test_env_var_forces(monkeypatch, recording):
    monkeypatch.setenv(kernels.ENV_VAR, "recording")
    dropkit.functional.gaussian_dropout(torch.randn(4), 0.5, seed=1)
    assert recording.calls == ["gaussian_dropout"]


def test_unsupported_dtype_falls_back_with_one_warning(recording):
    x = torch.randn(10, dtype=torch.float64)
    with kernels.use_backend("recording"):
        with pytest.warns(RuntimeWarning, match="using the reference backend"):
            y = dropkit.functional.dropout(x, 0.5, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dropkit.functional.dropout(x, 0.5, seed=1)  # warned once already
    assert recording.calls == []
    assert torch.equal(y, dropkit.functional.dropout(x, 0.5, seed=1))


def test_auto_prefers_registered_backend_for_its_device(recording):
    kernels.register_backend(recording, device_types=("cpu",))
    try:
        dropkit.functional.alpha_dropout(torch.randn(4), 0.5, seed=1)
        assert recording.calls == ["alpha_dropout"]
    finally:
        kernels._PREFERENCE["cpu"].remove("recording")


def test_unknown_backend_name(monkeypatch):
    with (
        pytest.raises(ValueError, match=r"backend must be one of \['auto'"),
        kernels.use_backend("nonsense"),
    ):
        pass
    monkeypatch.setenv(kernels.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match=r"environment variable DROPKIT_BACKEND must be one of"):
        kernels.current_backend_name()


def test_backend_missing_an_op_uses_reference_for_it(recording):
    x = torch.randn(4)
    with kernels.use_backend("recording"), pytest.warns(RuntimeWarning, match="cannot run"):
        assert kernels.backend_for(UNSUPPORTED, x).name == "reference"
    with kernels.use_backend("recording"):
        assert kernels.backend_for(kernels.SPECS["dropout"], x).name == "recording"


def test_lazy_backend_missing_dependency_falls_back(monkeypatch):
    def loader():
        raise ImportError("no module named 'imaginary'")

    kernels.register_lazy_backend("imaginary", loader, device_types=("meta",))
    try:
        assert "imaginary" in kernels.available_backends()
        x = torch.randn(8)
        with kernels.use_backend("imaginary"), pytest.warns(RuntimeWarning, match="unavailable"):
            y = dropkit.functional.dropout(x, 0.5, seed=3)
        assert torch.equal(y, dropkit.functional.dropout(x, 0.5, seed=3))
    finally:
        kernels._BACKENDS.pop("imaginary", None)
        kernels._LAZY.pop("imaginary", None)
        kernels._PREFERENCE.pop("meta", None)


def test_lazy_backend_loaded_on_first_use(recording):
    kernels._BACKENDS.pop("recording")
    loads = []

    def loader():
        loads.append(1)
        return recording

    kernels.register_lazy_backend("recording", loader)
    try:
        with kernels.use_backend("recording"):
            dropkit.functional.dropout(torch.randn(4), 0.5, seed=1)
            dropkit.functional.dropout(torch.randn(4), 0.5, seed=1)
        assert loads == [1] and recording.calls == ["dropout", "dropout"]
    finally:
        kernels._LAZY.pop("recording", None)
