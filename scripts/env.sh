# Sourced by the scripts: one target directory shared by every run, so that
# burn is built once per machine, not once per clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/covdiff/target}"
