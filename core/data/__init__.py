"""The data layer: records in the MLLMU-Bench shape and their sources (MLLMU parquet files, photo
folders, records built in code). The engine builds every prompt set from these; the toy world is
one source among others."""

from .folder import load_folder, save_folder
from .mllmu import export_records, load_parquet
from .records import ClassificationItem, GenerationItem, MaskItem, PersonRecord, Prompt, QAPair
from .source import ForgetData, load_data
from .wordings import PLAIN_ENGLISH, Wordings

__all__ = ["load_folder", "save_folder", "export_records", "load_parquet", "ClassificationItem", "GenerationItem",
           "MaskItem", "PersonRecord", "Prompt", "QAPair", "ForgetData", "load_data", "PLAIN_ENGLISH", "Wordings"]
