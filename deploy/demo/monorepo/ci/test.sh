# The gate: the package's unit test, then each service deployed to the environment must answer.
set -eu
. ci/lib.sh
sh tests/greeting_test.sh
for svc in api web; do
  [ -f "$env_dir/$svc/service.sh" ] || continue
  answer=$(sh "$env_dir/$svc/service.sh" tester)
  case "$answer" in
    *"Hello, tester!"*) echo "ok $svc answers: $(echo "$answer" | tr '\n' ' ')" ;;
    *) echo "FAIL $svc answered: $answer"; exit 1 ;;
  esac
done
