# Keystone's own image (SPEC §12).
#
#   docker build -t keystone .          the published image: compiled from
#                                       source, on Alpine with git and CA
#                                       certificates, running as uid 10001
#   scripts/image-prebuilt.sh TAG       a binary built on this machine,
#                                       packaged FROM scratch (no pulls)
#
# The default build needs BuildKit (the default builder since Docker 23): the
# legacy builder builds every stage before the target, including `prebuilt`.
# Stages are ordered so that the targets built without pulling any image
# (`source`, `prebuilt`) come before those that pull (`build`, `final`).

ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.22

# source: the build context exactly as .dockerignore leaves it, which is all
# that reaches the compiler (tests check it holds no .git, .env or tests).
FROM scratch AS source
LABEL keystone.build.stage=source
COPY . /src

# prebuilt: the context is a directory holding `keystone` (static, built with
# CGO_ENABLED=0), `ca-certificates.crt` and an empty `data` directory; see
# scripts/image-prebuilt.sh. It has no git, so it can serve webhooks, pages
# and probes but cannot fetch sources to deploy: use it for tests and for
# hosts that cannot pull the base images.
FROM scratch AS prebuilt
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY keystone /usr/local/bin/keystone
COPY --chown=10001:10001 data /var/lib/keystone
ENV KEYSTONE_ADDR=:8080 KEYSTONE_DATA_DIR=/var/lib/keystone HOME=/var/lib/keystone TMPDIR=/var/lib/keystone
USER 10001:10001
WORKDIR /var/lib/keystone
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/keystone", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/keystone"]
CMD ["serve"]

# build: a static binary, with no path of this machine inside it.
FROM golang:${GO_VERSION}-alpine AS build
WORKDIR /src
COPY --from=source /src/go.mod /src/go.sum ./
RUN go mod download
COPY --from=source /src/ ./
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /keystone ./cmd/bot

# final (default): git is needed by the deploy engine to fetch app sources.
FROM alpine:${ALPINE_VERSION} AS final
RUN apk add --no-cache ca-certificates git \
 && addgroup -S -g 10001 keystone \
 && adduser -S -D -H -u 10001 -G keystone -h /var/lib/keystone -s /sbin/nologin keystone \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/keystone
COPY --from=build /keystone /usr/local/bin/keystone
ENV KEYSTONE_ADDR=:8080 KEYSTONE_DATA_DIR=/var/lib/keystone HOME=/var/lib/keystone
USER 10001:10001
WORKDIR /var/lib/keystone
VOLUME ["/var/lib/keystone"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/keystone", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/keystone"]
CMD ["serve"]
