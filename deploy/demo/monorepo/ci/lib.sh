# What every pipeline script needs, whichever bot runs it: Gandalf's GANDALF_* or Bobby's BOBBY_*
# variables, and DEMO_ENVS, the directory whose subdirectories stand for the environments.
env_name=${GANDALF_ENV:-${BOBBY_ENV:-}}
sha=${GANDALF_SHA:-${BOBBY_SHA:-unknown}}
resource=${GANDALF_RESOURCE:-${BOBBY_RESOURCE:-}}
: "${DEMO_ENVS:?DEMO_ENVS names the directory standing for the environments}"
: "${env_name:?no environment: run me from Gandalf or Bobby}"
env_dir="$DEMO_ENVS/$env_name"
