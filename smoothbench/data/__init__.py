"""Datasets: ``get_dataset``, normalisation table, device-resident batches, image folders, fingerprints."""

from smoothbench.data.imagenet import ImageFolderSource
from smoothbench.data.info import DATASETS, NORMALIZATION, DatasetInfo
from smoothbench.data.registry import get_dataset
from smoothbench.data.resident import ResidentImages

__all__ = ["DATASETS", "NORMALIZATION", "DatasetInfo", "ImageFolderSource", "ResidentImages", "get_dataset"]
