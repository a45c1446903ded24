"""dsi: generative retrieval with T5 and constrained decoding over document identifiers."""

__version__ = "0.1.0"
