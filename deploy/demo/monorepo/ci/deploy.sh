# "Deploys" one service: copies its build into $DEMO_ENVS/<environment>/<service>/ in one move.
# Gandalf's revert runs it too, in a fresh copy of the commit to restore: it builds first then.
set -eu
. ci/lib.sh
[ -d "build/$resource" ] || sh ci/build.sh
mkdir -p "$env_dir"
rm -rf "$env_dir/$resource.new"
cp -R "build/$resource" "$env_dir/$resource.new"
rm -rf "${env_dir:?}/$resource"
mv "$env_dir/$resource.new" "$env_dir/$resource"
echo "deployed $resource at ${sha%"${sha#???????}"} to $env_name ($env_dir/$resource)"
