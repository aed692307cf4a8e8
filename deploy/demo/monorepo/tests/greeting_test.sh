# The package's unit test.
. libs/greeting/greeting.sh
got=$(greet World)
if [ "$got" != "Hello, World!" ]; then
  echo "FAIL greeting: expected 'Hello, World!', got '$got'"
  exit 1
fi
echo "ok greeting"
