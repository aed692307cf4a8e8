# The shared package: how every service says hello.
greet() {
  printf 'Hello, %s!\n' "$1"
}
