"""Moved to :mod:`tokenmill.prepare.ray_executor`; this name stays importable for code written before the move."""

from tokenmill.prepare.ray_executor import RayExecutor, RayWorkerLost

__all__ = ["RayExecutor", "RayWorkerLost"]
