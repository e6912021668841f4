"""A chainable, checkpointable streaming pipeline (epochraft's interface, resumable at once).

``Pipeline`` is the entry point (re-exported as ``tokenmill.Pipeline``); docs/pipeline.md is the guide.
"""

from tokenmill.pipeline.base import Node, Stage
from tokenmill.pipeline.batch import IGNORE_INDEX, collate
from tokenmill.pipeline.pipeline import STATE_FORMAT, Pipeline, PipelineIterator

__all__ = ["IGNORE_INDEX", "STATE_FORMAT", "Node", "Pipeline", "PipelineIterator", "Stage", "collate"]
