#!/bin/sh
# `redis-server …` as the official image runs it: protected mode off (see redis.Dockerfile).
set -e
if [ "$1" = "redis-server" ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
