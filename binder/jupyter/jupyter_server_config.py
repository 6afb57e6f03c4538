# Loaded on Binder through JUPYTER_CONFIG_PATH (set by binder/start): JupyterLab's file browser
# starts in the learner's workspace, where binder/start put their copies of the labs.
from mlops_lab import config

c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)
c.ServerApp.root_dir = str(config.ensure_home())
