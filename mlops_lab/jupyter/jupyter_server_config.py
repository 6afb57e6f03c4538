# Loaded by the JupyterLab `mlops-lab lab` starts (on JUPYTER_CONFIG_PATH, beside your own Jupyter
# config) and by Binder's (binder/jupyter): MLflow's UI one click away in the launcher, and terminals
# that have the course's environment on PATH.
from mlops_lab import learner

learner.configure_jupyter(get_config())  # noqa: F821 (provided by Jupyter when it loads this file)
