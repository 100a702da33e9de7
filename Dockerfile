# The tidescale image: `tidescale run` and `tidescale adapter` (the Helm chart's image).
#   docker build -t ghcr.io/tidescale/tidescale:0.1.0 .
# Build stage: the whole workspace with its lock file; only the tidescale binary is kept.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tidescale \
 && cp target/release/tidescale /tidescale

# Runtime: glibc and CA certificates only, no shell, as the unprivileged user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /tidescale /usr/local/bin/tidescale
USER 65532:65532
EXPOSE 6443 8080
ENTRYPOINT ["/usr/local/bin/tidescale"]
CMD ["run"]
