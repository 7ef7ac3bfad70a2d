#!/usr/bin/env bash
# Kaldi-style option parsing, meant to be *sourced* after the caller has set default values:
#
#   stage=0; stop_stage=""; recipe=egs/synth_longform     # defaults = the known options
#   help_message="Usage: ..."
#   . local/parse_options.sh                               # "$@" now holds what is left
#
# Each "--some-name value" (or "--some-name=value") sets the shell variable some_name, which
# must already exist; "--help"/"-h" prints $help_message and exits 0. An unknown option prints
# the usage and exits 2. Parsing stops at "--": what follows is left in "$@" (run.sh passes it
# to the Python stages as hydra overrides). Any other argument is an error.

_po_usage() { printf '%s\n' "${help_message:-}" >&2; }
_po_rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      printf '%s\n' "${help_message:-}"; exit 0 ;;
    --)
      shift; _po_rest=("$@"); break ;;
    --*=*|--*)
      if [[ "$1" == *=* ]]; then _po_name=${1%%=*}; _po_value=${1#*=}; _po_n=1
      else _po_name=$1; _po_value=${2-}; _po_n=2
        if [ $# -lt 2 ]; then
          echo "$0: option $1 needs a value" >&2; _po_usage; exit 2
        fi
      fi
      _po_var=${_po_name#--}; _po_var=${_po_var//-/_}
      if [[ ! "$_po_var" =~ ^[a-zA-Z_][a-zA-Z0-9_]*$ ]] || [ -z "${!_po_var+set}" ]; then
        echo "$0: unknown option $_po_name" >&2; _po_usage; exit 2
      fi
      # booleans stay booleans: a variable that was true/false only takes true/false
      if { [ "${!_po_var}" = true ] || [ "${!_po_var}" = false ]; } &&
         [ "$_po_value" != true ] && [ "$_po_value" != false ]; then
        echo "$0: option $_po_name takes true or false, not '$_po_value'" >&2; exit 2
      fi
      printf -v "$_po_var" '%s' "$_po_value"
      shift "$_po_n" ;;
    *)
      echo "$0: unexpected argument '$1' (hydra overrides go after --)" >&2; _po_usage; exit 2 ;;
  esac
done
set -- "${_po_rest[@]+"${_po_rest[@]}"}"
unset _po_name _po_value _po_n _po_var _po_rest
