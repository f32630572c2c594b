"""The coding layer: the learned error-bounded coder, a trial's complete compressor, and the peers it is held against.

numpy here (torch only inside the fitting of predictors): the compress
application, the review and the trial stage all stand on it.
"""

from hpcsweep.codec.coder import Codec, Column
from hpcsweep.codec.compressor import AMORTISED_OVER, Compressor, Latents, Network, fit_compressor, measure
from hpcsweep.codec.fit import Settings, codec_kinds, columns_for, energy_of, fit_codec, fit_independent
from hpcsweep.codec.peers import PEERS, available, compress_with_peers

__all__ = [
    "AMORTISED_OVER",
    "PEERS",
    "Codec",
    "Column",
    "Compressor",
    "Latents",
    "Network",
    "Settings",
    "available",
    "codec_kinds",
    "columns_for",
    "compress_with_peers",
    "energy_of",
    "fit_codec",
    "fit_compressor",
    "fit_independent",
    "measure",
]
