# The start-up file of JupyterLab terminals that `make lab` opens (see jupyter_server_config.py).
# The terminal's parent already ran your login profile; this is bash's usual interactive set-up
# plus the course's venv and folder.
[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"

if [ -n "$MIGRATION_LAB_BIN" ]; then
    if [ -f "$MIGRATION_LAB_BIN/activate" ]; then
        . "$MIGRATION_LAB_BIN/activate"  # PATH, VIRTUAL_ENV and the "(.venv)" prompt
    else
        PATH="$MIGRATION_LAB_BIN:$PATH"
        export PATH
    fi
    hash -r
fi
[ -n "$MIGRATION_LAB_ROOT" ] && cd "$MIGRATION_LAB_ROOT"
