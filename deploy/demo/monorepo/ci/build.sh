# Builds one resource into build/<resource>/ of this working copy (the deploy steps share it).
set -eu
. ci/lib.sh
out="build/$resource"
rm -rf "$out"
mkdir -p "$out"
case "$resource" in
  greeting)
    sh -n libs/greeting/greeting.sh
    cp libs/greeting/greeting.sh "$out/" ;;
  api|web)
    sh -n "services/$resource/service.sh"
    cp -R "services/$resource/." "$out/"
    cp libs/greeting/greeting.sh "$out/" ;;
  *) echo "build: unknown resource $resource" >&2; exit 2 ;;
esac
echo "$sha" >"$out/VERSION"
echo "built $resource at ${sha%"${sha#???????}"}"
