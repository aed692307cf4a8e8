# The web front end: its banner, then a greeting.
cat "$(dirname "$0")/banner.txt"
. "$(dirname "$0")/greeting.sh"
greet "${1:-visitor}"
