"""The MC-dropout sampling engine: vectorised, chunked within a memory budget, reproducible."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import torch
import torch.utils._pytree
from torch import Tensor, nn

from dropkit import _mc_context
from dropkit.functional._checks import check_seed
from dropkit.nn._base import DropoutModule
from dropkit.nn._learned import LearnedDropoutModule
from dropkit.uncertainty._mc_mode import is_mc_capable, mc_mode

__all__ = [
    "ClassificationReducer",
    "ClassificationSummary",
    "MeanReducer",
    "Moments",
    "MomentsReducer",
    "Reducer",
    "sample",
    "select_output",
]

DEFAULT_BATCH_BUDGET = 256 * 2**20


class Reducer(Protocol):
    """Streams over chunks of samples shaped ``(k, B, ...)`` without holding them all."""

    def update(self, chunk: Tensor) -> None: ...

    def result(self) -> Any: ...


class Moments(NamedTuple):
    """Mean and (population) variance over the sample axis, each shaped ``(B, ...)``."""

    mean: Tensor
    variance: Tensor


class MomentsReducer:
    """Streaming mean and variance (Chan et al.'s pairwise merge of Welford statistics), in
    float64, returned in the samples' dtype."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None
        self.dtype = torch.float32

    def update(self, chunk: Tensor) -> None:
        self.dtype = chunk.dtype
        values = chunk.to(torch.float64)
        n_chunk = values.shape[0]
        chunk_mean = values.mean(0)
        chunk_m2 = ((values - chunk_mean) ** 2).sum(0)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n_chunk, chunk_mean, chunk_m2
            return
        total = self.count + n_chunk
        delta = chunk_mean - self.mean
        self.mean = self.mean + delta * (n_chunk / total)
        self.m2 = self.m2 + chunk_m2 + delta**2 * (self.count * n_chunk / total)
        self.count = total

    def result(self) -> Moments:
        if self.mean is None or self.m2 is None:
            raise RuntimeError("MomentsReducer.result() called before any update")
        return Moments(self.mean.to(self.dtype), (self.m2 / self.count).to(self.dtype))


class MeanReducer(MomentsReducer):
    """Streaming mean over the sample axis: the predictive mean, shaped ``(B, ...)``."""

    def result(self) -> Tensor:  # type: ignore[override]
        return super().result().mean


class ClassificationSummary(NamedTuple):
    """Predictive summaries of class probabilities; every field is shaped ``(B, ...)``."""

    mean: Tensor
    predictive_entropy: Tensor
    expected_entropy: Tensor
    mutual_information: Tensor
    variation_ratio: Tensor


_FROM_LOGITS_HINT = (
    "for a model that outputs logits pass reduce=ClassificationReducer(from_logits=True), "
    "or end the model with a softmax"
)


class ClassificationReducer:
    """Streams class probabilities (last dim = classes) into a :class:`ClassificationSummary`.

    Args:
        from_logits: apply a softmax over the last dim first (model outputs logits).
    """

    def __init__(self, *, from_logits: bool = False) -> None:
        self.from_logits = from_logits
        self.count = 0
        self.sum_probs: Tensor | None = None
        self.sum_entropy: Tensor | None = None
        self.votes: Tensor | None = None
        self.dtype = torch.float32

    def update(self, chunk: Tensor) -> None:
        from dropkit.uncertainty._metrics import check_probabilities, entropy

        self.dtype = chunk.dtype
        values = chunk.to(torch.float64)
        probs = (
            values.softmax(-1)
            if self.from_logits
            else check_probabilities(values, "samples", logits_hint=_FROM_LOGITS_HINT)
        )
        votes = torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).sum(0)
        if self.sum_probs is None or self.sum_entropy is None or self.votes is None:
            self.sum_probs = probs.sum(0)
            self.sum_entropy = entropy(probs).sum(0)
            self.votes = votes
        else:
            self.sum_probs += probs.sum(0)
            self.sum_entropy += entropy(probs).sum(0)
            self.votes += votes
        self.count += probs.shape[0]

    def result(self) -> ClassificationSummary:
        from dropkit.uncertainty._metrics import entropy

        if self.sum_probs is None or self.sum_entropy is None or self.votes is None:
            raise RuntimeError("ClassificationReducer.result() called before any update")
        mean = self.sum_probs / self.count
        predictive = entropy(mean)
        expected = self.sum_entropy / self.count
        variation = 1.0 - self.votes.max(-1).values.to(torch.float64) / self.count
        fields = (mean, predictive, expected, (predictive - expected).clamp_min(0), variation)
        return ClassificationSummary(*(f.to(self.dtype) for f in fields))


_REDUCERS = {
    "mean": MeanReducer,
    "moments": MomentsReducer,
    "classification": ClassificationReducer,
}


def _make_reducer(reduce: str | Reducer | None) -> Reducer | None:
    if reduce is None or not isinstance(reduce, str):
        return reduce
    if reduce not in _REDUCERS:
        raise ValueError(
            f"reduce must be None, a Reducer or one of {tuple(_REDUCERS)}, got {reduce!r}"
        )
    return _REDUCERS[reduce]()


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _tensor_bytes(value: object) -> int:
    return value.numel() * value.element_size() if isinstance(value, Tensor) else 0


class _Probe:
    """Estimates the bytes one sample's forward needs.

    On CUDA: the allocator's peak above its level before the forward. Elsewhere (no allocator
    statistics): the input, every leaf module's output, and four times the largest of those for
    the transient random words of the reference RNG — a deliberate overestimate.
    """

    def __init__(self, model: nn.Module, x: Tensor) -> None:
        self.model, self.x = model, x
        self.outputs: list[int] = []

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self.outputs.append(_tensor_bytes(output))

    def run(self) -> tuple[Any, int]:
        if self.x.is_cuda:
            torch.cuda.synchronize(self.x.device)
            torch.cuda.reset_peak_memory_stats(self.x.device)
            before = torch.cuda.memory_allocated(self.x.device)
            output = self.model(self.x)
            torch.cuda.synchronize(self.x.device)
            return output, torch.cuda.max_memory_allocated(self.x.device) - before
        leaves = [m for m in self.model.modules() if not any(True for _ in m.children())]
        handles = [m.register_forward_hook(self._hook) for m in leaves]
        try:
            output = self.model(self.x)
        finally:
            for handle in handles:
                handle.remove()
        largest = max(self.outputs, default=0)
        output_bytes = sum(_tensor_bytes(t) for t in torch.utils._pytree.tree_leaves(output))
        estimate = _tensor_bytes(self.x) + sum(self.outputs) + 4 * largest + output_bytes
        return output, estimate


def _folded(x: Tensor, k: int) -> Tensor:
    return x.unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])


OutputSelector = str | int | Callable[[Any], Tensor] | None


def select_output(output: Any, selector: OutputSelector = None) -> Tensor:
    """The tensor to sample from a model's ``output``.

    ``selector=None``: a tensor is itself; a mapping or a Hugging Face ``ModelOutput`` gives its
    ``"logits"`` entry. A string picks that key or attribute, an int that position of a
    tuple/list (or ``ModelOutput``), a callable is applied to the output.
    """
    if callable(selector):
        picked = selector(output)
    elif selector is None:
        if isinstance(output, Tensor):
            return output
        if isinstance(output, Mapping) and "logits" in output:
            picked = output["logits"]
        else:
            keys = list(output.keys()) if isinstance(output, Mapping) else None
            raise TypeError(
                f"the model returned {type(output).__name__}"
                + (f" with keys {keys}" if keys is not None else "")
                + ", not a tensor: pass output= (a key such as 'logits', an index, or a "
                "callable output -> tensor)"
            )
    elif isinstance(selector, str):
        if isinstance(output, Mapping) and selector in output:
            picked = output[selector]
        elif hasattr(output, selector):
            picked = getattr(output, selector)
        else:
            keys = list(output.keys()) if isinstance(output, Mapping) else []
            raise KeyError(
                f"output={selector!r}: the model's {type(output).__name__} has no such entry "
                f"(entries: {keys})"
            )
    elif isinstance(selector, int) and not isinstance(selector, bool):
        items = output.to_tuple() if hasattr(output, "to_tuple") else output
        if not isinstance(items, (tuple, list)) or not -len(items) <= selector < len(items):
            raise IndexError(
                f"output={selector}: the model's {type(output).__name__} is not a sequence "
                "with that index"
            )
        picked = items[selector]
    else:
        raise TypeError(
            f"output must be None, a key, an index or a callable, got {type(selector).__name__}"
        )
    if not isinstance(picked, Tensor):
        raise TypeError(f"output= selected a {type(picked).__name__}, not a tensor")
    return picked


def _unfold(output: object, k: int, batch: int) -> Tensor:
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(output).__name__}")
    if output.dim() == 0 or output.shape[0] != k * batch:
        raise ValueError(
            f"the model's output has shape {tuple(output.shape)}, expected a leading dim of "
            f"{k * batch} ({k} folded samples x batch {batch}): keep the batch as dim 0"
        )
    return output.reshape(k, batch, *output.shape[1:])


def sample(
    model: nn.Module,
    x: Tensor,
    samples: int = 100,
    *,
    seed: int = 0,
    batch_budget: int = DEFAULT_BATCH_BUDGET,
    reduce: str | Reducer | None = None,
    batch_consistent: bool = False,
    output: OutputSelector = None,
) -> Any:
    r"""Draw ``samples`` MC-dropout predictions of ``model`` on ``x``: shaped ``(S, B, ...)``.

    Runs ``model`` in :func:`~dropkit.uncertainty.mc_mode` (dropout samples, BatchNorm & co. in
    eval) with ``k`` samples folded into the batch dimension at once, ``k`` as large as
    ``batch_budget`` bytes allow (estimated from a probe forward of the first sample), looping
    over chunks of samples beyond it. Sample ``s`` draws every dropout mask from step
    ``h(seed, s) + call`` of its module's seed, with the element index of a plain forward of
    ``x``: the result is a pure function of ``(model, x, seed)``, bit-identical for any
    ``batch_budget``, and a prefix of the batch gets the masks of the full batch's first rows.
    Module ``step`` buffers are left as they were.

    The predictive distribution is approximated by
    :math:`p(y|x) \approx \frac{1}{S}\sum_s p(y|x, \hat\omega_s)`, :math:`\hat\omega_s \sim
    q(\omega)` the dropout distribution (Gal & Ghahramani 2016).

    Args:
        model: a module whose dropout is dropkit's (or :class:`~dropkit.uncertainty.MCCapable`)
            and which treats dim 0 of its input and output as the batch.
        x: the input batch ``(B, ...)``.
        samples: number of MC samples ``S`` (>= 1).
        seed: the sampling seed; with the model's own seeds it fixes every mask.
        batch_budget: bytes one vectorised forward may use; must hold at least one sample.
        reduce: ``None`` returns all samples ``(S, B, ...)``; ``"mean"``, ``"moments"``
            (:class:`Moments`), ``"classification"`` (:class:`ClassificationSummary`, outputs
            must be probabilities) or any :class:`Reducer` stream over chunks instead.
        batch_consistent: every input of a sample sees the same mask (BatchBALD).
        output: which tensor of the model's output to sample (:func:`select_output`): by
            default a tensor output itself, or the ``logits`` of a Hugging Face
            ``ModelOutput`` (or of a dict); a key, an index, or a callable ``output -> tensor``.

    Shape:
        - Input: :math:`(B, *)`. Output: :math:`(S, B, *)` (or the reducer's result).

    Example:
        >>> import torch, dropkit
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), dropkit.nn.Dropout(0.5),
        ...                           torch.nn.Linear(8, 2))
        >>> dropkit.uncertainty.sample(net, torch.randn(5, 3), samples=10, seed=1).shape
        torch.Size([10, 5, 2])

    References:
        Gal & Ghahramani, "Dropout as a Bayesian Approximation: Representing Model Uncertainty
        in Deep Learning", ICML 2016. Kirsch, van Amersfoort & Gal, "BatchBALD", NeurIPS 2019.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise TypeError("x must be a tensor with a leading batch dimension")
    samples = _check_positive_int(samples, "samples")
    batch_budget = _check_positive_int(batch_budget, "batch_budget")
    if isinstance(seed, Tensor) or seed is None:
        raise TypeError(f"seed must be an int in [0, 2**64 - 1], got {seed!r}")
    check_seed(seed)
    if not any(is_mc_capable(m) for m in model.modules()):
        raise ValueError(
            "model has no dropkit dropout module (dropkit.nn.DropoutModule or MCCapable): MC "
            "sampling would return identical samples; add dropout or convert the model"
        )
    reducer = _make_reducer(reduce)
    batch = x.shape[0]
    # Learned-rate modules (issue 12) keep seed/step buffers too but are not DropoutModules.
    steps = [
        m.step for m in model.modules() if isinstance(m, (DropoutModule, LearnedDropoutModule))
    ]
    saved_steps = [s.clone() for s in steps]
    collected: list[Tensor] = []

    def forward(first: int, k: int, probe: bool = False) -> tuple[Tensor, int]:
        for step in steps:
            step.zero_()
        context = _mc_context.SampleContext(
            _mc_context.sample_steps(seed, first, k).to(x.device), batch_consistent
        )
        with _mc_context.sampling(context):
            if probe:
                result, needed = _Probe(model, _folded(x, k)).run()
            else:
                result, needed = model(_folded(x, k)), 0
        if context.calls == 0:
            raise ValueError(
                "model made no dropkit dropout call in MC mode: MC sampling would return "
                "identical samples; check that its dropout is dropkit's"
            )
        chunk = _unfold(select_output(result, output), k, batch)
        if reducer is None:
            collected.append(chunk)
        else:
            reducer.update(chunk)
        return chunk, needed

    try:
        with mc_mode(model), torch.no_grad():
            _, per_sample = forward(0, 1, probe=True)
            if per_sample > batch_budget:
                raise ValueError(
                    f"batch_budget={batch_budget} bytes is too small for one sample of this "
                    f"batch: need at least {per_sample} bytes (estimated from a probe forward); "
                    f"raise batch_budget or pass a smaller batch"
                )
            per_chunk = max(1, batch_budget // max(per_sample, 1))
            first = 1
            while first < samples:
                k = min(per_chunk, samples - first)
                forward(first, k)
                first += k
    finally:
        with torch.no_grad():
            for step, saved in zip(steps, saved_steps, strict=True):
                step.copy_(saved)
    if reducer is not None:
        return reducer.result()
    return torch.cat(collected) if len(collected) > 1 else collected[0]
