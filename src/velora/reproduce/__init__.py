"""`velora reproduce`: check, split, train, evaluate with both protocols, and report, in one resumable
command (run.py); the throughput measurement and wall-time estimate (throughput.py); report.json and
report.md next to the published figures (report.py)."""

from velora.reproduce.run import ReproduceOptions, ReproduceResult, reproduce

__all__ = ["ReproduceOptions", "ReproduceResult", "reproduce"]
