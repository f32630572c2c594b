"""Autoencoders behind one small interface: `encode`, `decode`, `forward`."""

from __future__ import annotations

from torch import Tensor, nn

from hpcsweep.config import ModelConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "relu": nn.ReLU}


class Autoencoder(nn.Module):
    """Symmetric MLP n -> hidden -> z -> reversed(hidden) -> n.

    Each hidden block is Linear -> activation -> BatchNorm1d (the thesis' 27-variable
    net); the latent and output layers are linear.
    """

    def __init__(self, n_inputs: int, hidden: list[int], latent: int, activation: str = "leaky_relu", batchnorm: bool = True):
        super().__init__()
        self.encoder = _mlp([n_inputs, *hidden, latent], activation, batchnorm)
        self.decoder = _mlp([latent, *reversed(hidden), n_inputs], activation, batchnorm)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def _mlp(widths: list[int], activation: str, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
        if batchnorm:
            layers.append(nn.BatchNorm1d(n_out))
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


def build_model(config: ModelConfig, n_inputs: int) -> Autoencoder:
    return Autoencoder(n_inputs, list(config.hidden), config.latent, config.activation, config.batchnorm)
