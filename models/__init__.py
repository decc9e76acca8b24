"""Shipped models (installed as ``afxmatch._models``); each folder holds model.pt,
config.json, model.sha256 and MODEL_CARD.md."""
