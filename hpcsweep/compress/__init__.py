"""Compression stage: a trial's model and compressor exported as a bundle, and applied to users' files (compress,
decompress, score) within a bound on every value.

No torch here: the ONNX export and scoring import it inside their calls.
"""

from hpcsweep.compress.apply import compress_file, decompress_file
from hpcsweep.compress.bundle import Bundle, load_bundle
from hpcsweep.compress.container import read_compressed
from hpcsweep.compress.dataset import DatasetSummary, compress_dataset, decompress_dataset, read_manifest
from hpcsweep.compress.export import best_trial, export_bundle, export_onnx, trial_to_export
from hpcsweep.compress.reading import CompressedFile, iterate_compressed, open_compressed
from hpcsweep.compress.score import score_file

__all__ = [
    "Bundle",
    "CompressedFile",
    "DatasetSummary",
    "best_trial",
    "compress_dataset",
    "compress_file",
    "decompress_dataset",
    "decompress_file",
    "export_bundle",
    "export_onnx",
    "iterate_compressed",
    "load_bundle",
    "open_compressed",
    "read_compressed",
    "read_manifest",
    "score_file",
    "trial_to_export",
]
