# The API service: greets its caller.
. "$(dirname "$0")/greeting.sh"
greet "${1:-API client}"
