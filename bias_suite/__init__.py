"""bias-suite: a regression harness for intrinsic text bias in multimodal LLMs (arXiv 2510.26721)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bias-suite")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
