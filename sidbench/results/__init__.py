"""The results folder: score rows and their key, metrics, leaderboards, skipped files, provenance, and
the claim that lets only the same configuration resume a folder. Nothing here runs a network."""
from __future__ import annotations

from .folder import SKIPPED_COLUMNS, ResultsFolder, claim_results_folder, environment, write_run_json, write_skipped
from .scores import ROW_KEY, SCORE_COLUMNS, finalize_scores, read_scores, row_key, score_row, sigmoid
from .score_log import ScoreLog

__all__ = ["ROW_KEY", "SCORE_COLUMNS", "SKIPPED_COLUMNS", "ResultsFolder", "ScoreLog", "claim_results_folder", "environment",
           "finalize_scores", "read_scores", "row_key", "score_row", "sigmoid", "write_run_json", "write_skipped"]
