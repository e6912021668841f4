"""``tensor_from_token_array`` at epochraft's path."""

from tokenmill.epochraft.tensors import token_tensor as tensor_from_token_array

__all__ = ["tensor_from_token_array"]
