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


def _mlp(widths: list[int], activation: str, batchnorm: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(n_in, n_out), _activation(activation)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def _activation(name: str) -> nn.Module:
    """The activation after a Linear layer, in place where torch offers it (ReLU, LeakyReLU).

    In place is safe there: the Linear layer's output is this activation's alone (addmm's backward keeps its
    inputs, not its output) and the activations' backward reads their output. It spares a fresh activation-sized
    buffer per hidden layer and step (docs/benchmarks.md, "Where a step's time goes"); the numbers are the same
    bit for bit, and layers without parameters leave the state_dict keys as they were.
    """
    cls = ACTIVATIONS[name]
    return cls(inplace=True) if cls in (nn.LeakyReLU, nn.ReLU) else cls()


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
