"""Traffic-sign workbench core: data, models, training, evaluation, jobs. Never imports streamlit."""
