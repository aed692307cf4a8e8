#!/bin/sh
# Example Nightly step: replace with the real thing. Bobby passes BOBBY_ENV, BOBBY_ENV_URL,
# BOBBY_PHASE, BOBBY_STEP and BOBBY_ATTEMPT; exit 0 = done, 75 = throttled (retried), else = fault.
echo "$BOBBY_PHASE/$BOBBY_STEP for $BOBBY_ENV (attempt $BOBBY_ATTEMPT): nothing to do in the example"
