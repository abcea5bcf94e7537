# A stand-in for the official `redis:7-bookworm` image, built from Debian's own redis-server by
# scripts/images on machines that cannot pull images. Same contract as the official image for what
# docker-compose.yml uses: `redis-server` and `redis-cli` on PATH, working directory and volume
# /data owned by the redis user, the server running as that user, and protected mode off when the
# command is redis-server (the official image compiles it off: the server is reached by service
# name on a private Compose network, never published).
FROM debian:bookworm-slim
# hadolint ignore=DL3008
# The redis user first, with the official image's uid and gid (999), so that a `redis-data`
# volume is writable whichever of the two images runs it; Debian's package then reuses it.
RUN groupadd --system --gid 999 redis \
 && useradd --system --uid 999 --gid 999 --home-dir /var/lib/redis --no-create-home \
        --shell /usr/sbin/nologin redis \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data \
 && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME /data
USER redis
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
