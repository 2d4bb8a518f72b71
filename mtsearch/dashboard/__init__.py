"""What the dashboard (``dashboards/app.py``) and ``mtsearch report`` show, computed without Streamlit.

One module per concern: :mod:`.sweeps` (finding and reading sweeps), :mod:`.study` (a sweep's
Optuna study), :mod:`.leaderboard`, :mod:`.mlflow_links`, :mod:`.ablation`, :mod:`.importance`,
:mod:`.curves`, :mod:`.predictions` (error analysis), :mod:`.figures` and :mod:`.report`.
"""
