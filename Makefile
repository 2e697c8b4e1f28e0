# Keystone. `make run` starts it against a local PostgreSQL; `make test` runs
# every test against real PostgreSQL and Docker; `make bench` the benchmarks;
# `make faults` the whole-system fault suite (docs/reliability.md).
GO ?= go
BIN := bin/keystone
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

.PHONY: build run test bench faults vet clean image image-prebuilt

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/bot

run: build
	scripts/run.sh

test:
	scripts/test.sh

bench: build
	scripts/bench.sh

faults:
	scripts/faults.sh

# Keystone's own image, built from source (needs BuildKit and the base images).
image:
	docker build --build-arg VERSION=$(VERSION) -t keystone:$(VERSION) .

# The same from a binary built here, FROM scratch: no base image is pulled.
image-prebuilt:
	scripts/image-prebuilt.sh keystone:$(VERSION)-prebuilt

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
