"""Paths the dashboard tests share (a plain module: a conftest.py is pytest's, never imported)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboards" / "app.py"
