"""``epochraft.transforms.language_modeling``: the two helpers user code imports from here."""

from tokenmill.epochraft.boundaries import TokenizerBehavior
from tokenmill.epochraft.tensors import token_tensor as tensor_from_token_array

__all__ = ["TokenizerBehavior", "tensor_from_token_array"]
