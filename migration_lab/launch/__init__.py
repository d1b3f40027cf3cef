"""Getting the lab going: the venv installer (standard library only) and the JupyterLab launcher."""
