import subprocess
import sys


def test_import_mtsearch_stays_light():
    # Ray, MLflow, Streamlit and torch load only where they are used.
    code = (
        "import sys, mtsearch, mtsearch.tasks, mtsearch.errors, mtsearch.paths;"
        "heavy = [m for m in ('torch', 'ray', 'mlflow', 'streamlit', 'optuna', 'transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_does_not_import_the_heavy_stack():
    code = (
        "import sys; from mtsearch.cli import build_parser; build_parser();"
        "print(','.join(m for m in ('torch', 'ray', 'mlflow', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
