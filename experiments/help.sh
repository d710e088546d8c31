# Sourced first by every study script: `experiments/<script>.sh -h` (or --help) prints the
# script's header comment (its usage) and exits 0.
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
    exit 0
fi
