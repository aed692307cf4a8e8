# Nightly's morning deploy: every service from this working copy of main's tip.
set -eu
for r in greeting api web; do BOBBY_RESOURCE=$r sh ci/build.sh; done
for r in api web; do BOBBY_RESOURCE=$r sh ci/deploy.sh; done
