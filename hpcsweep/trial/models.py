"""Autoencoders behind one small interface.

Every model has `encode(x) -> latent`, `decode(latent) -> x`, `forward(x)`
(the deterministic reconstruction that is evaluated and stored) and
`objective(x) -> (loss to minimise, reconstruction MSE)` for training.

With a rate term (`train.rate_lambda` > 0) a model also learns what its
latents cost: a `LatentPrior` (Ballé et al.'s factorised prior: a learned
density per latent dimension) gives the bits of latents quantised on a grid of
step 1. During training the latents are perturbed by uniform noise of one step
(the differentiable stand-in for rounding) and the loss adds rate_lambda times
their bits per jet; in evaluation they are rounded, as the compressor stores
them. Without one, nothing of this exists and training is what it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from hpcsweep.config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "relu": nn.ReLU}
COMPONENTS = 4  # logistics per latent dimension in the prior


class LatentPrior(nn.Module):
    """A density per latent dimension, a mixture of COMPONENTS logistics, and the bits of quantised latents under it."""

    def __init__(self, latent: int, components: int = COMPONENTS) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(latent, components))
        self.means = nn.Parameter(torch.linspace(-2.0, 2.0, components).repeat(latent, 1))
        self.log_scales = nn.Parameter(torch.zeros(latent, components))

    def bits(self, latent: Tensor) -> Tensor:
        """Per jet: -log2 of the mass of [y - 1/2, y + 1/2] summed over its dimensions (y: latents, jets x z)."""
        y = latent[:, :, None]
        scale = torch.exp(self.log_scales).clamp_min(1e-3)
        mass = torch.sigmoid((y + 0.5 - self.means) / scale) - torch.sigmoid((y - 0.5 - self.means) / scale)
        mixed = (mass * torch.softmax(self.logits, dim=-1)).sum(dim=-1).clamp_min(1e-9)
        return -torch.log2(mixed).sum(dim=-1)


class Autoencoder(nn.Module):
    """Symmetric MLP n -> hidden -> z -> reversed(hidden) -> n.

    Each hidden block is Linear -> activation -> BatchNorm1d (optional) -> Dropout
    (optional), as the thesis' 27-variable net; the latent and output layers are linear.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: list[int],
        latent: int,
        activation: str = "leaky_relu",
        batchnorm: bool = True,
        dropout: float = 0.0,
        code_width: int | None = None,
        rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.latent = latent
        self.rate = rate
        self.encoder = _mlp([n_inputs, *hidden, code_width or latent], activation, batchnorm, dropout)
        self.decoder = _mlp([latent, *reversed(hidden), n_inputs], activation, batchnorm, dropout)
        if rate:
            self.prior = LatentPrior(latent)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        latent = self.encode(x)
        return self.decode(torch.round(latent) if self.rate and not self.training else latent)

    def objective(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.rate:
            mse = nn.functional.mse_loss(self(x), x)
            return mse, mse
        latent, bits = self.bottleneck(self.encode(x))
        mse = nn.functional.mse_loss(self.decode(latent), x)
        return _with_rate(mse, self.rate, bits), mse

    def bottleneck(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """Latents as the decoder sees them in training, and their mean bits per jet (0 without a rate term)."""
        if not self.rate:
            return latent, torch.zeros((), device=latent.device)
        noisy = latent + torch.rand_like(latent) - 0.5
        return noisy, self.prior.bits(noisy).mean()


class SparseAutoencoder(Autoencoder):
    """An AE whose hidden activations are pushed to sparsity (seed 001).

    'l1': lambda * sum over hidden layers of mean |activation|;
    'kl': lambda * sum over hidden units of KL(rho || mean sigmoid(activation)).
    """

    def __init__(
        self, n_inputs: int, hidden: list[int], latent: int, *, sparsity: str = "l1", weight: float = 1e-3, rho: float = 0.05, **layers: Any
    ) -> None:
        super().__init__(n_inputs, hidden, latent, **layers)  # layers: activation, batchnorm, dropout
        self.sparsity, self.weight, self.rho = sparsity, weight, rho

    def objective(self, x: Tensor) -> tuple[Tensor, Tensor]:
        activations: list[Tensor] = []
        out = x
        for layer in self.encoder:
            out = layer(out)
            if isinstance(layer, tuple(ACTIVATIONS.values())):
                activations.append(out)
        out, bits = self.bottleneck(out)
        for layer in self.decoder:
            out = layer(out)
            if isinstance(layer, tuple(ACTIVATIONS.values())):
                activations.append(out)
        mse = nn.functional.mse_loss(out, x)
        if self.sparsity == "l1":
            penalty = sum(a.abs().mean() for a in activations)
        else:
            rho = torch.tensor(self.rho, device=x.device)
            penalty = sum(_kl_bernoulli(rho, torch.sigmoid(a).mean(dim=0)).sum() for a in activations)
        return _with_rate(mse + self.weight * penalty, self.rate, bits), mse


class VariationalAutoencoder(Autoencoder):
    """Gaussian latent; trained with reparametrised samples, evaluated from the latent mean."""

    def __init__(self, n_inputs: int, hidden: list[int], latent: int, *, beta: float = 1e-3, **layers: Any) -> None:
        super().__init__(n_inputs, hidden, latent, code_width=2 * latent, **layers)  # the encoder gives mean and log-variance
        self.beta = beta

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)[:, : self.latent]

    def objective(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        latent, bits = self.bottleneck(mean)
        sample = latent + torch.randn_like(latent) * torch.exp(0.5 * log_var)
        mse = nn.functional.mse_loss(self.decode(sample), x)
        kl = -0.5 * torch.mean(torch.sum(1 + log_var - mean**2 - log_var.exp(), dim=1))
        return _with_rate(mse + self.beta * kl, self.rate, bits), mse


def _with_rate(loss: Tensor, rate: float, bits: Tensor) -> Tensor:
    """`loss` plus the latents' weighted bits; without a rate term `loss` itself (the graph, and so every gradient, as before)."""
    return loss + rate * bits if rate else loss


def _kl_bernoulli(rho: Tensor, rho_hat: Tensor) -> Tensor:
    rho_hat = rho_hat.clamp(1e-6, 1 - 1e-6)
    return rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))


def _mlp(widths: list[int], activation: str, batchnorm: bool, dropout: float) -> Blocks:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
        if batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return Blocks(*layers)


class Blocks(nn.Sequential):
    """The layers of one half, run in training with each activation and the BatchNorm after it as one fused step.

    The layers, their order and so their state_dict keys are those of the plain `nn.Sequential` (stored trials,
    bundles and `fold_batchnorm` read them by those keys and types); only the training forward differs:
    `ActivationBatchNorm` makes one pass fewer over the activations forward and backward than the activation
    and `nn.BatchNorm1d` one after the other (docs/benchmarks.md, "Where a step's time goes"). In evaluation,
    and wherever a layer is called on its own (the sparse AE's penalty reads each activation), the layers run
    one by one.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        layers = list(self)
        i = 0
        while i < len(layers):
            after = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(after, nn.BatchNorm1d) and _fusable(layers[i], after):
                x = activation_batchnorm(x, layers[i], after)
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


def _fusable(activation: nn.Module, norm: nn.BatchNorm1d) -> bool:
    """An activation before a BatchNorm that normalises with this batch's statistics (training, tracked or not)."""
    return type(activation) in ACTIVATIONS.values() and norm.training


def activation_batchnorm(h: Tensor, activation: nn.Module, norm: nn.BatchNorm1d) -> Tensor:
    """`norm(activation(h))` in training, as `ActivationBatchNorm`; the running statistics are updated as
    `nn.BatchNorm1d.forward` updates them (momentum, or a cumulative average when it is None)."""
    momentum = 0.0
    if norm.track_running_stats:
        assert norm.num_batches_tracked is not None  # tracked statistics come with their counter
        norm.num_batches_tracked.add_(1)
        momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    slope = activation.negative_slope if isinstance(activation, nn.LeakyReLU) else 0.0
    out: Tensor = ActivationBatchNorm.apply(
        h, norm.weight, norm.bias, norm.running_mean, norm.running_var, momentum, norm.eps, type(activation).__name__, slope
    )
    return out


class ActivationBatchNorm(torch.autograd.Function):
    """y = activation(h), then BatchNorm of y with the batch's statistics, forward and backward each in fewer passes.

    `nn.BatchNorm1d` on a (jets x units) batch runs aten's generic kernel, which is slow for 2-D input, and the
    activation's backward is a pass of its own. Here the statistics are column sums (contiguous, vectorised),
    the normalisation one `addcmul`, and the backward is BatchNorm's closed form, dy = a*g + b*y + c per unit,
    written in two passes, then the activation's backward from the saved y. Only y is kept for backward (the
    unfused pair keeps y and BatchNorm's own copies of the statistics). The numbers are those of the unfused
    pair up to float32 rounding (tests/trial/test_models.py).
    """

    @staticmethod
    def forward(
        ctx: Any,
        h: Tensor,
        weight: Tensor | None,
        bias: Tensor | None,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        momentum: float,
        eps: float,
        activation: str,
        slope: float,
    ) -> Tensor:
        with torch.profiler.record_function("ActivationBatchNorm"):
            y = _ACTIVATE[activation](h, slope)
            n = y.shape[0]
            mean = y.sum(0) / n
            centred = y - mean
            var = centred.square().sum(0) / n
            invstd = torch.rsqrt(var + eps)
            scale = invstd if weight is None else invstd * weight
            out = torch.addcmul(torch.zeros_like(mean) if bias is None else bias, centred, scale)
            if running_mean is not None and running_var is not None:
                running_mean.lerp_(mean, momentum)
                running_var.lerp_(var * (n / max(n - 1, 1)), momentum)
        ctx.save_for_backward(y, mean, invstd, weight)
        ctx.activation, ctx.slope, ctx.has_bias = activation, slope, bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
        y, mean, invstd, weight = ctx.saved_tensors
        n = y.shape[0]
        g_sum = g.sum(0)
        g_centred = (g * y).sum(0) - mean * g_sum  # sum of g * (y - mean)
        scale = invstd if weight is None else invstd * weight
        k = scale * invstd * invstd * g_centred / n  # dy = scale * g - k * (y - mean) - scale * g_sum / n
        dy = torch.addcmul(k * mean - scale * g_sum / n, g, scale)
        dy.addcmul_(y, k, value=-1.0)
        dh = _ACTIVATION_BACKWARD[ctx.activation](dy, y, ctx.slope)
        d_weight = invstd * g_centred if weight is not None and ctx.needs_input_grad[1] else None
        d_bias = g_sum if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dh, d_weight, d_bias, None, None, None, None, None, None


#: activation(h, slope) and its backward from the output y, (dy, y, slope) -> dh, for each of ACTIVATIONS.
_ACTIVATE: dict[str, Callable[[Tensor, float], Tensor]] = {
    "LeakyReLU": lambda h, slope: nn.functional.leaky_relu(h, slope),
    "ReLU": lambda h, _: torch.relu(h),
    "Tanh": lambda h, _: torch.tanh(h),
}
_ACTIVATION_BACKWARD: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "LeakyReLU": lambda dy, y, slope: torch.ops.aten.leaky_relu_backward(dy, y, slope, True),
    "ReLU": lambda dy, y, _: torch.ops.aten.threshold_backward(dy, y, 0.0),
    "Tanh": lambda dy, y, _: torch.ops.aten.tanh_backward(dy, y),
}


def fold_batchnorm(model: Autoencoder) -> Autoencoder:
    """An evaluation-only copy of `model` with each BatchNorm folded into the Linear layer after it.

    At evaluation BatchNorm is the affine map y -> a*y + b, so W(a*y + b) + c = (W diag a) y + (W b + c):
    one pass over the activations less per hidden layer, the same outputs up to rounding. Dropout, the
    identity at evaluation, goes too.
    """
    folded = copy.deepcopy(model).eval()
    for name in ("encoder", "decoder"):
        setattr(folded, name, _fold(getattr(folded, name)))
    return folded


@torch.no_grad()
def _fold(layers: nn.Sequential) -> nn.Sequential:
    kept: list[nn.Module] = []
    scale: Tensor | None = None
    shift: Tensor | None = None
    for layer in layers:
        if isinstance(layer, nn.BatchNorm1d):
            assert layer.running_var is not None and layer.running_mean is not None  # tracked: the models never turn it off
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            shift = layer.bias - layer.running_mean * scale
        elif isinstance(layer, nn.Linear) and scale is not None and shift is not None:
            layer.bias.add_(layer.weight @ shift)
            layer.weight.mul_(scale)
            scale = shift = None
            kept.append(layer)
        elif not isinstance(layer, nn.Dropout):
            kept.append(layer)
    return nn.Sequential(*kept)


def build_model(config: ModelConfig, n_inputs: int, rate: float = 0.0) -> Autoencoder:
    """The model a config describes, for `n_inputs` variables (`rate`: the weight of its latents' bits in the loss)."""
    assert config.autoencoder, "kind codec trains no network"
    common: dict[str, Any] = dict(activation=config.activation, batchnorm=config.batchnorm, dropout=config.dropout, rate=rate)
    if config.kind == "sparse":
        return SparseAutoencoder(
            n_inputs,
            list(config.hidden),
            config.latent,
            sparsity=config.sparsity,
            weight=config.sparsity_lambda,
            rho=config.sparsity_rho,
            **common,
        )
    if config.kind == "vae":
        assert config.beta is not None  # a VAE without beta is refused by the configuration
        return VariationalAutoencoder(n_inputs, list(config.hidden), config.latent, beta=config.beta, **common)
    return Autoencoder(n_inputs, list(config.hidden), config.latent, **common)
