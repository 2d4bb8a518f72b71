"""mtsearch: search over the design choices of multitask BERT fine-tuning.

Kept light on purpose: importing the package loads neither torch nor Ray, MLflow or
Streamlit; those are imported where they are used.
"""

__version__ = "0.1.0"
