# Loaded on Binder through JUPYTER_CONFIG_PATH (set by binder/start): JupyterLab's file browser
# starts in the learner's workspace, where binder/start put their copies of the labs.
from mlops_lab import config, learner

c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)
c.ServerApp.root_dir = str(config.ensure_home())

# JupyterLab keeps a notebook's kernel running after its tab is closed. In Binder's 2 GB, the
# kernels of finished labs crowd out the next lab: shut down a kernel once no tab is connected to it
# and it has been idle for 15 minutes. A kernel with an open tab is never shut down.
c.MappingKernelManager.cull_idle_timeout = 15 * 60
c.MappingKernelManager.cull_interval = 60
c.MappingKernelManager.cull_connected = False

# MLflow's and Dagster's UIs one click away (launcher tiles, through jupyter-server-proxy), and
# terminals with the course's environment on PATH: the same as `mlops-lab lab` (mlops_lab/jupyter).
learner.configure_jupyter(c)
