# A stand-in for the image mybinder.org builds from binder/ with repo2docker (Docker Hub and conda
# channels are out of reach here, so: the local Debian base image, and PyPI for every package).
# What it keeps from repo2docker: user jovyan with uid 1000 whose home is the repository, one
# environment (NB_PYTHON_PREFIX) holding both Binder's own Jupyter packages and binder/environment.yml,
# the same postBuild, and binder/start run at container start. Layers go from rarely to often
# changed, so a rebuild after a code change reuses the installed environments.
ARG BASE_IMAGE=mlops-lab/python:3.11-slim-local
FROM ${BASE_IMAGE}

# binder/apt.txt: Debian packages, installed as root first, as repo2docker does (comments and blank
# lines dropped, no recommended packages).
COPY binder/apt.txt /tmp/apt.txt
RUN apt-get update -q \
 && sed -e 's/#.*//' /tmp/apt.txt | xargs --no-run-if-empty env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends >/dev/null \
 && rm -rf /var/lib/apt/lists/*

ARG NB_USER=jovyan
ARG NB_UID=1000
ENV USER=${NB_USER} NB_USER=${NB_USER} NB_UID=${NB_UID} HOME=/home/${NB_USER} REPO_DIR=/home/${NB_USER} \
    NB_PYTHON_PREFIX=/srv/conda/envs/notebook PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN groupadd --gid ${NB_UID} ${NB_USER} \
 && useradd --comment "Default user" --create-home --gid ${NB_UID} --no-log-init --shell /bin/bash --uid ${NB_UID} ${NB_USER} \
 && mkdir -p /srv/conda/envs && chown -R ${NB_USER}:${NB_USER} /srv/conda
USER ${NB_USER}
ENV PATH=${NB_PYTHON_PREFIX}/bin:${PATH}

# repo2docker's base environment for Python 3.11 (its conda lock file's Jupyter packages).
RUN python3 -m venv ${NB_PYTHON_PREFIX} \
 && pip install -q pip==25.3 setuptools==80.9.0 wheel==0.45.1 \
 && pip install -q jupyterlab==4.4.10 notebook==7.4.7 jupyter-server==2.17.0 jupyterlab-server==2.28.0 \
      jupyterhub==5.4.2 ipywidgets==8.1.8 ipykernel==7.1.0 jupyter-resource-usage==1.2.0 \
      jupyter-offlinenotebook==0.3.2 pyyaml

# binder/environment.yml: its pip section into the same environment, as repo2docker's micromamba does.
COPY --chown=${NB_UID}:${NB_UID} binder/environment.yml /tmp/env/environment.yml
RUN python -c "import yaml; env = yaml.safe_load(open('/tmp/env/environment.yml')); \
print('\n'.join(next(d['pip'] for d in env['dependencies'] if isinstance(d, dict))))" > /tmp/env/requirements.txt \
 && pip install -q -U -r /tmp/env/requirements.txt

# The repository is the home folder; then the same postBuild as on Binder.
COPY --chown=${NB_UID}:${NB_UID} . ${REPO_DIR}
WORKDIR ${REPO_DIR}
RUN ./binder/postBuild
# repo2docker's entrypoint runs binder/start before the command.
ENV R2D_ENTRYPOINT=${REPO_DIR}/binder/start
ENTRYPOINT ["/bin/bash", "-c", "exec \"$R2D_ENTRYPOINT\" \"$@\"", "--"]
CMD ["jupyter", "notebook", "--ip", "0.0.0.0"]
