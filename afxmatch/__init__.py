"""afxmatch: match an effect chain (6-band EQ + compressor + gain) to a reference recording."""

__version__ = "0.1.0"

from .errors import AfxmatchError  # noqa: E402,F401
