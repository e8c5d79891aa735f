# The inplace-manager image: a static binary on distroless, as non-root.
# (On machines without a Docker engine, `make image` assembles the same image
# from the binary with hack/tools/cmd/mkimage.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY VERSION ./
COPY certs/ certs/
COPY cmd/ cmd/
COPY controller/ controller/
COPY inplace/ inplace/
COPY webhook/ webhook/
ARG TARGETOS=linux TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
	-ldflags "-s -w -X github.com/inplace-dev/inplace/cmd/inplace-manager/app.Version=$(cat VERSION)" -o /inplace-manager ./cmd/inplace-manager

FROM gcr.io/distroless/static:nonroot
COPY --from=build /inplace-manager /inplace-manager
USER 65532:65532
ENTRYPOINT ["/inplace-manager"]
