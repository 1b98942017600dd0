#!/bin/sh
# Entrypoint of AuthStack's RabbitMQ image: the part of docker.io/library/rabbitmq's
# docker-entrypoint.sh that AuthStack relies on, in POSIX sh, never as root.
#
# RABBITMQ_ERLANG_COOKIE, when set, becomes $HOME/.erlang.cookie (mode 0600), which the
# server and the CLI tools (rabbitmq-diagnostics in the probes) read. RABBITMQ_DEFAULT_USER
# and RABBITMQ_DEFAULT_PASS are read by the server itself. Arguments starting with "-" are
# passed to rabbitmq-server.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- rabbitmq-server "$@"
fi
if [ "$(id -u)" = 0 ] && [ "$1" = rabbitmq-server ]; then
  echo "refusing to run RabbitMQ as root: run the container as uid 999 (the image's default)" >&2
  exit 1
fi

if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
  cookie="${HOME:?HOME must be set}/.erlang.cookie"
  if [ ! -f "$cookie" ] || [ "$(cat "$cookie")" != "$RABBITMQ_ERLANG_COOKIE" ]; then
    (umask 077 && printf '%s' "$RABBITMQ_ERLANG_COOKIE" >"$cookie.new" && mv -f "$cookie.new" "$cookie")
  fi
fi

exec "$@"
